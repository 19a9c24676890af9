"""Compression operators: a tensor in, a Payload with exact wire bits out.

Every operator: `compress(x, state) -> Payload` (`.tensors` what travels, `.bits` exact wire
bits, `.meta`, `.coded_bits` an ideal coded size where stated) and `decompress(payload)`.
`make_compressor(name, **options)` builds one by name.
"""

from __future__ import annotations

from coders.compressors.casts import Cast, Identity
from coders.compressors.error_feedback import ErrorFeedback
from coders.compressors.lowrank import LowRank, orthogonalize
from coders.compressors.payload import Compressor, Payload, log2_binomial, pack_bits, unpack_bits
from coders.compressors.qsgd import QSGD, qsgd_omega
from coders.compressors.sign import ScaledSign, Sign, pack_signs, unpack_signs
from coders.compressors.sparse import RandomK, TopK

__all__ = [
    "Payload", "Compressor", "Identity", "Cast", "TopK", "RandomK", "QSGD", "Sign", "ScaledSign",
    "LowRank", "ErrorFeedback", "make_compressor", "COMPRESSORS", "orthogonalize", "qsgd_omega",
    "pack_bits", "unpack_bits", "pack_signs", "unpack_signs", "log2_binomial",
]

COMPRESSORS = {
    "identity": Identity,
    "fp32": Identity,
    "fp16": lambda **o: Cast("fp16", **o),
    "bf16": lambda **o: Cast("bf16", **o),
    "topk": TopK,
    "randk": RandomK,
    "qsgd": QSGD,
    "sign": Sign,
    "scaled_sign": ScaledSign,
    "lowrank": LowRank,
}


def make_compressor(name: str, error_feedback: bool = False, **options) -> Compressor:
    """A compressor by name (see COMPRESSORS), optionally wrapped in ErrorFeedback."""
    if name not in COMPRESSORS:
        raise ValueError(f"unknown compressor {name!r}; choose from {sorted(COMPRESSORS)}")
    c = COMPRESSORS[name](**options)
    return ErrorFeedback(c) if error_feedback else c
