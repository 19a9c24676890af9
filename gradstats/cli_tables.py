"""Tables as `gradstats` prints them: chosen key columns, named headers, rounded numbers, "-" for NaN.

The full tables go to the files each sub-command writes; the terminal gets what fits in a glance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

MISSING = "-"


def number(v: Any, digits: int = 4) -> str:
    """A number rounded to `digits` significant digits; "-" for NaN / None."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10_000 else str(v)
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e15:
            return number(int(v))
        return f"{v:.{digits}g}"
    return str(v)


def bits(v: Any) -> str:
    """A bit count: an integer with thousands separators."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    return f"{float(v):,.0f}"


def table(df: pd.DataFrame, columns: Mapping[str, str] | Sequence[str] | None = None,
          formats: Mapping[str, Callable[[Any], str]] | None = None, digits: int = 4) -> str:
    """`df` as text: the `columns` present (a mapping renames them), numbers via `number`."""
    if columns is None:
        columns = list(df.columns)
    names = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}
    keep = [c for c in names if c in df.columns]
    formats = formats or {}
    out = pd.DataFrame({
        names[c]: [formats[c](v) if c in formats else number(_py(v), digits) for v in df[c]] for c in keep
    })
    return out.to_string(index=False)


def key_values(items: Mapping[str, Any], digits: int = 4) -> str:
    """`key: value` lines, keys right-aligned."""
    width = max((len(k) for k in items), default=0)
    return "\n".join(f"{k:>{width}}: {number(_py(v), digits)}" for k, v in items.items())


def _py(v: Any) -> Any:
    """numpy / pandas scalars as Python ones, so that `number` sees int, float, bool."""
    if v is pd.NA or v is pd.NaT:
        return None
    item = getattr(v, "item", None)
    return item() if callable(item) else v
