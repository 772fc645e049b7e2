# Quick start: `make serve` (the daemon on the shipped models) and `make test`.
.PHONY: setup serve test lint bench

setup:
	@bash scripts/setup.sh

serve: setup
	bash scripts/serve.sh $(ARGS)

test: setup
	.venv/bin/python -m ruff check .
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/python -m ruff check .
