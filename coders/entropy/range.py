"""Range coding (Martin 1979) via `constriction.stream.queue.RangeEncoder`."""

from __future__ import annotations

from typing import Any

import numpy as np

from coders.entropy.stream_coder import ConstrictionStreamCoder


class RangeCoder(ConstrictionStreamCoder):
    """Range coder over the model's 24-bit categorical table; a chunk is whole 32-bit words."""

    name = "range"
    wire_id = 2

    def _encode(self, values: np.ndarray, table: Any) -> Any:
        import constriction

        enc = constriction.stream.queue.RangeEncoder()
        enc.encode(values, table)
        return enc

    def _decoder(self, words: np.ndarray) -> Any:
        import constriction

        return constriction.stream.queue.RangeDecoder(words)
