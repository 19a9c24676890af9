"""The coding side of stage 3 has no import cycles and imports no later stage."""

import ast
from pathlib import Path

import coders

ROOT = Path(coders.__file__).parent
PACKAGES = ("quantizers", "models", "entropy")
MODULES = ("wire.py", "family_fit.py", "report.py", "selection.py")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    files = [ROOT / m for m in MODULES] + [p for pk in PACKAGES for p in (ROOT / pk).rglob("*.py")]
    names = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = deps
    return graph


def test_no_cycles_between_coding_modules():
    graph = _graph()
    # a package's __init__ only re-exports: an edge into a package means its submodules
    internal = {n: {d for d in deps if d in graph and not (d in {f"coders.{p}" for p in PACKAGES}
                                                          and n.startswith(d + "."))}
                for n, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        state[n] = 1
        for d in internal[n]:
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, n, d]))
            if d not in state:
                visit(d, [*path, n])
        state[n] = 2

    for n in internal:
        if n not in state:
            visit(n, [])


def test_no_import_from_a_later_stage():
    for name, deps in _graph().items():
        later = [d for d in deps if d.split(".")[0] == "analysis"
                 or d.startswith(("coders.algorithms", "coders.runtime", "coders.compressors"))]
        assert not later, f"{name} imports {later}"
