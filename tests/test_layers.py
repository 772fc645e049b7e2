"""The command line is a layer on top: nothing in the library imports ``e2m_live.commands`` or
``e2m_live.cli`` (issue 18). Checked on every import statement of every module, those inside
functions included, so a lazy import cannot slip through."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "e2m_live"
#: The command-line layer: it may import the library, never the other way round.
CLI_LAYER = ("e2m_live.cli", "e2m_live.commands", "e2m_live.__main__")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _in_cli_layer(module: str) -> bool:
    return any(module == layer or module.startswith(layer + ".") for layer in CLI_LAYER)


def _imported(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (``from e2m_live import cli`` counts as ``e2m_live.cli``)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


LIBRARY = sorted(p for p in PACKAGE.rglob("*.py") if not _in_cli_layer(_module_name(p)))


def test_the_library_is_found() -> None:
    names = {_module_name(p) for p in LIBRARY}
    assert {"e2m_live.features", "e2m_live.live.daemon", "e2m_live.pipeline"} <= names
    assert not any(_in_cli_layer(name) for name in names)


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: _module_name(p))
def test_library_does_not_import_the_command_line(path: Path) -> None:
    upward = [f"line {line}: {name}" for line, name in _imported(path) if _in_cli_layer(name)]
    assert not upward, f"{_module_name(path)} imports the command-line layer: {'; '.join(upward)}"


def test_the_check_sees_every_form_of_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "e2m_live" / "live"
    fake.mkdir(parents=True)
    module = fake / "fake.py"
    module.write_text(
        "def f():\n    from .. import cli\n    import e2m_live.commands.plan\n"
        "    from e2m_live.commands.errors import UsageError\n"
    )
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path / "e2m_live")
    names = [name for _, name in _imported(module) if _in_cli_layer(name)]
    assert names == [
        "e2m_live.cli",
        "e2m_live.commands.plan",
        "e2m_live.commands.errors",
        "e2m_live.commands.errors.UsageError",
    ]
