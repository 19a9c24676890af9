"""The module structure: data flows one way (capture -> fit -> code -> compare -> report), no import cycles.

Imports are read from the source (every `import` statement, function-local ones included), so a lazy import
that hides a cycle from Python's loader is still a cycle here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"captures": 1, "gradstats": 2, "coders": 3, "analysis": 4}
FACADE = {"gradstats.cli", "gradstats.cli_validate", "gradstats.cli_progress", "gradstats.cli_tables",
          "gradstats.__main__"}  # the CLI (its modules) imports every stage, lazily per sub-command


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in STAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            out[_module_name(p)] = p
    return out


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _imports(mod: str, path: Path, mods: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod if is_pkg else mod.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                src = f"{base}.{node.module}" if node.module else base
            else:
                src = node.module or ""
            # `from pkg import sub` names a module when pkg/sub.py exists, else an attribute of pkg
            names = [f"{src}.{a.name}" if f"{src}.{a.name}" in mods else src for a in node.names]
        else:
            continue
        for n in names:
            r = _resolve(n, mods)
            if r is not None and r != mod:
                out.add(r)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _is_init_reexport(a: str, b: str) -> bool:
    """A package __init__ importing its own sub-modules (re-exports) is the package's face, not a cycle."""
    return b.startswith(a + ".")


def test_no_import_cycles_between_modules():
    g = _graph()
    # a package's __init__ re-exporting its children is not a dependency of the children on each other
    g = {m: {d for d in deps if not _is_init_reexport(m, d)} for m, deps in g.items()}
    assert _cycles(g) == []


def test_no_import_cycles_between_subpackages():
    # coders.algorithms <-> coders.runtime was a cycle of packages with no cycle of modules
    def unit(m: str) -> str:
        return ".".join(m.split(".")[:2])

    g: dict[str, set[str]] = {}
    for m, deps in _graph().items():
        if m in FACADE:
            continue
        g.setdefault(unit(m), set()).update(
            unit(d) for d in deps if unit(d) != unit(m) and not _is_init_reexport(m, d))
    for deps in list(g.values()):
        for d in deps:
            g.setdefault(d, set())
    assert _cycles(g) == []


def test_no_import_from_a_later_stage():
    g = _graph()
    back = sorted((m, d) for m, deps in g.items() for d in deps
                  if m not in FACADE and STAGES[d.split(".")[0]] > STAGES[m.split(".")[0]])
    assert back == []


def test_the_graph_is_read():
    # the checks above mean something only if imports are found: a known edge of each kind
    g = _graph()
    assert "captures.store" in g["captures"]
    assert any(d.startswith("gradstats") for d in g["coders.models"] | set().union(
        *(g[m] for m in g if m.startswith("coders."))))
