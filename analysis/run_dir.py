"""The run directory (ARCHITECTURE.md, "Run directory layout"): which units it holds and their tables.

A unit is one workload's directory: `capture/` (or the directory is itself a capture) and the
tables `fits.parquet`, `bits.parquet`, `rd.parquet`. `gradstats demo` writes one unit per
workload under the run directory and the comparison at its top level; `gradstats capture --out x`
followed by `fit` / `code` makes `x` itself a unit.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from captures import resolve_capture_dir

DATA_FILES = ("fits.parquet", "bits.parquet", "rd.parquet")


def capture_dir(unit: Path) -> Path | None:
    """The capture of a unit, None if it has none.

    `captures.resolve_capture_dir`: `unit/capture/` (what `gradstats demo` writes) or `unit` itself.
    """
    d = resolve_capture_dir(unit)
    return d if (d / "manifest.json").exists() or any(d.glob("manifest.rank*.json")) else None


def _is_unit(d: Path) -> bool:
    return capture_dir(d) is not None or any((d / f).exists() for f in DATA_FILES)


def find_units(run_dir: str | Path) -> list[Path]:
    """Directories holding one workload's capture/fits/bits: `run_dir` itself and/or its children."""
    root = Path(run_dir)
    if not root.is_dir():
        raise ValueError(f"run directory {root} does not exist")
    units = [root] if _is_unit(root) else []
    skip = {"figures", "capture", "steps"}  # a unit's own parts, not units
    units += sorted(d for d in root.iterdir() if d.is_dir() and d.name not in skip and _is_unit(d))
    return units


def read_table(path: Path) -> pd.DataFrame | None:
    """The table at `path` (parquet, else csv), None when the file is absent."""
    if not path.exists():
        return None
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def slug(text: str) -> str:
    """`text` with every character but letters, digits, '-' and '_' replaced by '_' (file names, HTML ids)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(text))
