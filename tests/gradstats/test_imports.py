"""The modules of gradstats import each other without cycles, and only earlier stages (captures)."""

import ast
from pathlib import Path

import gradstats

PACKAGE = Path(gradstats.__file__).parent
FACADES = {"cli", "__main__", "__init__"}  # the CLI and the lazy package namespace may import anything


def _imports(path: Path) -> set[str]:
    """Top-level package modules (gradstats.x, captures, coders, analysis) a module imports anywhere."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "gradstats" and len(parts) > 1 and (PACKAGE / f"{parts[1]}.py").exists():
                out.add(parts[1])
            elif parts[0] in ("captures", "coders", "analysis"):
                out.add(parts[0])
    return out


GRAPH = {p.stem: _imports(p) - {p.stem} for p in PACKAGE.glob("*.py") if p.stem not in FACADES}


def test_no_import_cycles_between_gradstats_modules():
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in GRAPH.get(m, ()):
            assert state.get(d) != 1, f"import cycle: {' -> '.join([*path, m, d])}"
            if d not in state:
                visit(d, [*path, m])
        state[m] = 2

    assert {"families", "fitting", "gennorm_solver", "arrays"} <= set(GRAPH)
    for m in GRAPH:
        if m not in state:
            visit(m, [])


def test_statistics_import_no_later_stage():
    later = {m: sorted(d & {"coders", "analysis"}) for m, d in GRAPH.items()}
    assert {m: d for m, d in later.items() if d} == {}
