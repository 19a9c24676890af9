"""Entropy-coded size of a payload, next to its raw wire size.

Each operator says how its payload is entropy-coded (`Compressor.entropy_symbols`: the
discrete streams, e.g. QSGD levels, sign bits, top-k index gaps, and the raw bits of the rest);
the streams are coded with an empirical (histogram) model and an entropy coder from
`coders.entropy` (ANS by default), the model's side bits included. Operators with nothing
discrete to code (casts, random-k values, low-rank factors) report their raw bits. Sizes, not
streams: `code_length` counts the bits the coder would emit.
"""

from __future__ import annotations

import numpy as np

from coders.compressors.payload import Compressor, Payload
from coders.entropy import code_length

__all__ = ["payload_symbols", "entropy_coded_bits"]


def payload_symbols(compressor: Compressor, payload: Payload) -> tuple[list[np.ndarray], int] | None:
    """(symbol streams to entropy-code, raw bits of the rest) or None if nothing is discrete."""
    return compressor.entropy_symbols(payload)


def entropy_coded_bits(compressor: Compressor, payload: Payload, coder: str = "ans") -> int:
    """Bits of the payload with its discrete parts entropy-coded (histogram model + `coder`)."""
    parts = payload_symbols(compressor, payload)
    if parts is None:
        return payload.bits
    streams, rest = parts
    return rest + sum(int(code_length(s, "histogram", coder)) for s in streams if s.size)
