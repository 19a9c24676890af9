"""What the two constriction stream coders share: a chunk is whole 32-bit words under the model's
24-bit categorical table (`coders.entropy.categorical`); they differ only in the coder object."""

from __future__ import annotations

from typing import Any

import numpy as np

from coders.entropy.categorical import categorical, coded_probs


class ConstrictionStreamCoder:
    """A `Coder` over a constriction stream coder; subclasses give `_encode` and `_decoder`."""

    uses_model = True

    def _encode(self, values: np.ndarray, table: Any) -> Any:  # pragma: no cover - abstract
        """The constriction encoder holding `values` coded under `table`."""
        raise NotImplementedError

    def _decoder(self, words: np.ndarray) -> Any:  # pragma: no cover - abstract
        """A constriction decoder reading `words`."""
        raise NotImplementedError

    def code_probs(self, model: Any) -> np.ndarray:
        """The 24-bit fixed-point table constriction codes with (`coded_probs`)."""
        return coded_probs(model)

    def encode_chunk(self, values: np.ndarray, model: Any) -> bytes:
        return self.encode_chunk_counted(values, model)[0]

    def encode_chunk_counted(self, values: np.ndarray, model: Any) -> tuple[bytes, int]:
        """The chunk's words and constriction's `num_bits()` of the same encoder (one encode)."""
        enc = self._encode(values, categorical(model))
        bits = int(enc.num_bits())
        return enc.get_compressed().astype("<u4").tobytes(), bits

    def chunk_bits(self, values: np.ndarray, model: Any) -> int:
        """constriction's `num_bits()`: whole 32-bit words."""
        return int(self._encode(values, categorical(model)).num_bits())

    def decode_chunk(self, data: bytes, model: Any, count: int, dtype: Any = np.int32) -> np.ndarray:
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        return np.asarray(self._decoder(words).decode(categorical(model), count), dtype=np.int32)
