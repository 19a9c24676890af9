"""Quantizers by name: `QUANTIZERS` and `make_quantizer(name, **options)` (what the CLI builds from)."""

from __future__ import annotations

from typing import Any

from coders.quantizers.base import Quantizer
from coders.quantizers.entropy_constrained import EntropyConstrainedQuantizer
from coders.quantizers.lloyd_max import LloydMaxQuantizer
from coders.quantizers.uniform import UniformQuantizer

QUANTIZERS: dict[str, type] = {
    "uniform": UniformQuantizer,
    "lloyd-max": LloydMaxQuantizer,
    "ecsq": EntropyConstrainedQuantizer,
}
"""name -> quantizer class; a new quantizer is one module plus one entry here."""


def make_quantizer(name: str, **options: Any) -> Quantizer:
    """`QUANTIZERS[name](**options)`; ValueError naming the valid names for an unknown one."""
    cls = QUANTIZERS.get(str(name).lower())
    if cls is None:
        raise ValueError(f"unknown quantizer {name!r}; use one of {', '.join(QUANTIZERS)}")
    return cls(**options)
