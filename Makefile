# Quick start: `make serve` (the daemon on the shipped models) and `make test`.
# `make bench`: every benchmark's quick mode (a few minutes; docs/benchmarks.md has the full runs).
# `make lint`: ruff check, ruff format --check and mypy (what the pre-commit hooks run).
.PHONY: setup serve test lint bench

setup:
	@bash scripts/setup.sh

serve: setup
	bash scripts/serve.sh $(ARGS)

test: setup
	.venv/bin/python -m ruff check .
	.venv/bin/python -m ruff format --check .
	.venv/bin/python -m mypy
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/python -m ruff check .
	.venv/bin/python -m ruff format --check .
	.venv/bin/python -m mypy

# Quick modes; a `-` line reports and carries on when a benchmark misses its budget.
BENCH = .venv/bin/python benchmarks
bench: setup
	-$(BENCH)/plan_speed.py --plans 20
	-$(BENCH)/label_speed.py --repeat 2
	-$(BENCH)/grammar_speed.py --plans 1000
	-$(BENCH)/decode_speed.py --sizes compact --threads 1 --bars 2 --reference-tokens 2
	-$(BENCH)/extract_speed.py --per-corpus 2 --repeat 1
	-$(BENCH)/live_timing.py --quick
	-$(BENCH)/sync.py --quick
	-$(BENCH)/key_lock.py --key-lock 0 1 --seeds 1 --bars 4 --keys 2
	-$(BENCH)/web_load.py --seconds 5 --repeats 1
	-$(BENCH)/soak.py --minutes 1 --sample-every 5
