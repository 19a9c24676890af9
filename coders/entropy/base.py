"""The `Coder` protocol: one chunk of values in, bytes out, and back; the exact length of a chunk.

A coder that `uses_model` codes table indices (int32, from `ProbabilityModel.indices`) under the
model's table; one that does not (zstd) codes the symbols themselves in the narrowest integer
dtype (the model is ignored). Framing (chunks, escapes, header) is the container's
(`coders.entropy.container`), so a coder only ever sees one chunk.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Coder(Protocol):
    """An entropy coder of one chunk."""

    name: str
    """Registry name ("ans", "range", "huffman", "zstd")."""
    wire_id: int
    """The coder's id in a blob header."""
    uses_model: bool

    def encode_chunk(self, values: np.ndarray, model: Any) -> bytes:
        """Bytes of one chunk of values."""

    def decode_chunk(self, data: bytes, model: Any, count: int, dtype: np.dtype) -> np.ndarray:
        """The `count` values of one chunk (table indices, or symbols of `dtype`)."""

    def chunk_bits(self, values: np.ndarray, model: Any) -> int:
        """Exact information bits of one chunk (what `encode_chunk` produces, without framing)."""

    def encode_chunk_counted(self, values: np.ndarray, model: Any) -> tuple[bytes, int]:
        """(`encode_chunk`, `chunk_bits`) of one chunk from one encode: the bits the encoder itself
        reports for the bytes it wrote."""

    def code_probs(self, model: Any) -> np.ndarray | None:
        """The probabilities this coder effectively codes the model's table entries with (None
        without a model): sum over symbols of -log2 of them is the limit its payload meets."""
