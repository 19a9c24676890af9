"""Entropy-coded size of a payload, next to its raw wire size.

The discrete parts of a payload (QSGD levels, sign bits, top-k index gaps) are coded with an
empirical (histogram) model and an entropy coder from `coders.entropy` (ANS by default); the
model's side bits are included, float parts (norms, scales, values) stay at their raw size.
Operators with nothing discrete to code (casts, random-k values, low-rank factors) report
their raw bits. Sizes, not streams: `code_length` counts the bits the coder would emit.
"""

from __future__ import annotations

import numpy as np

from coders.compressors.payload import Compressor, Payload, tensor_bits, unpack_bits
from coders.compressors.qsgd import QSGD
from coders.compressors.sign import ScaledSign, Sign
from coders.compressors.sparse import TopK

__all__ = ["payload_symbols", "entropy_coded_bits"]


def payload_symbols(compressor: Compressor, payload: Payload) -> tuple[list[np.ndarray], int] | None:
    """(symbol streams to entropy-code, raw bits of the rest) or None if nothing is discrete."""
    inner = getattr(compressor, "compressor", compressor)  # see through ErrorFeedback
    t = payload.tensors
    if isinstance(inner, QSGD):
        levels = unpack_bits(t["levels"], inner.width, payload.meta["numel"]) - inner.levels
        return [levels.cpu().numpy()], tensor_bits(t["norms"])
    if isinstance(inner, Sign | ScaledSign):
        signs = unpack_bits(t["signs"], 1, payload.meta["numel"])
        rest = tensor_bits(t["scale"]) if "scale" in t else 0
        return [signs.cpu().numpy()], rest
    if isinstance(inner, TopK):
        idx = t["indices"].long().cpu().numpy()
        gaps = np.diff(np.concatenate([[-1], np.sort(idx)])) - 1
        return [gaps], tensor_bits(t["values"])
    return None


def entropy_coded_bits(compressor: Compressor, payload: Payload, coder: str = "ans") -> int:
    """Bits of the payload with its discrete parts entropy-coded (histogram model + `coder`)."""
    from coders.entropy import code_length

    parts = payload_symbols(compressor, payload)
    if parts is None:
        return payload.bits
    streams, rest = parts
    return rest + sum(int(code_length(s, "histogram", coder)) for s in streams if s.size)
