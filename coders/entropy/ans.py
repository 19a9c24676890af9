"""Asymmetric numeral systems (Duda 2009) via `constriction.stream.stack.AnsCoder`."""

from __future__ import annotations

from typing import Any

import numpy as np

from coders.entropy.stream_coder import ConstrictionStreamCoder


class AnsCoder(ConstrictionStreamCoder):
    """rANS over the model's 24-bit categorical table; a chunk is whole 32-bit words."""

    name = "ans"
    wire_id = 1

    def _encode(self, values: np.ndarray, table: Any) -> Any:
        import constriction

        enc = constriction.stream.stack.AnsCoder()
        enc.encode_reverse(values, table)  # a stack: coded in reverse so that it decodes forward
        return enc

    def _decoder(self, words: np.ndarray) -> Any:
        import constriction

        return constriction.stream.stack.AnsCoder(words)
