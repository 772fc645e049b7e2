"""``training/``'s import graph: no module cycles, and the subpackages only look down their order.

Every ``import`` counts, also the ones inside functions (a lazy import is still a dependency).
The order (``training/README.md``): ``common`` <- ``data`` <- ``figaro`` <- ``evaluation`` <- ``planner``;
the runtime package never imports ``training``.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAINING = REPO / "training"
#: A subpackage may import only those before it (and itself).
ORDER = ("common", "data", "figaro", "evaluation", "planner")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The ``training`` modules ``path`` imports (``from training.x import y`` counts ``training.x.y``
    when that is a module, else ``training.x``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != "training":
                found.add(name)
    return found


def import_graph(root: Path = TRAINING) -> dict[str, set[str]]:
    paths = sorted(root.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    graph = {_module_name(p): _imports(p, modules) for p in paths}
    for name, deps in graph.items():
        deps.discard(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _layer(module: str) -> str:
    return module.split(".")[1]


def test_training_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_subpackages_only_import_downwards():
    upward = [
        f"{module} -> {dep}"
        for module, deps in import_graph().items()
        for dep in deps
        if ORDER.index(_layer(dep)) > ORDER.index(_layer(module))
    ]
    assert upward == []


def test_every_training_module_sits_in_a_subpackage():
    flat = [p.name for p in TRAINING.glob("*.py") if p.name not in ("__init__.py", "common.py")]
    assert flat == []
    assert {p.name for p in TRAINING.iterdir() if (p / "__init__.py").is_file()} == set(ORDER) - {"common"}


def test_the_runtime_package_does_not_import_training():
    runtime = REPO / "e2m_live"
    modules = {_module_name(p) for p in TRAINING.rglob("*.py")}
    offenders = {}
    for path in runtime.rglob("*.py"):
        if deps := _imports(path, modules):
            offenders[str(path.relative_to(REPO))] = sorted(deps)
    assert offenders == {}


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
