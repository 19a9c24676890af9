"""Range coding (Martin 1979) via `constriction.stream.queue.RangeEncoder`."""

from __future__ import annotations

from typing import Any

import numpy as np

from coders.entropy.categorical import categorical, coded_probs


class RangeCoder:
    """Range coder over the model's 24-bit categorical table; a chunk is whole 32-bit words."""

    name = "range"
    wire_id = 2
    uses_model = True

    def _encode(self, values: np.ndarray, model: Any) -> Any:
        import constriction

        enc = constriction.stream.queue.RangeEncoder()
        enc.encode(values, categorical(model))
        return enc

    def code_probs(self, model: Any) -> np.ndarray:
        """The 24-bit fixed-point table constriction codes with (`coded_probs`)."""
        return coded_probs(model)

    def encode_chunk(self, values: np.ndarray, model: Any) -> bytes:
        return self._encode(values, model).get_compressed().astype("<u4").tobytes()

    def chunk_bits(self, values: np.ndarray, model: Any) -> int:
        """constriction's `num_bits()`: whole 32-bit words."""
        return int(self._encode(values, model).num_bits())

    def decode_chunk(self, data: bytes, model: Any, count: int, dtype: Any = np.int32) -> np.ndarray:
        import constriction

        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        dec = constriction.stream.queue.RangeDecoder(words)
        return np.asarray(dec.decode(categorical(model), count), dtype=np.int32)
