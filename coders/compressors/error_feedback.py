"""Error feedback (residual memory) around any compressor.

Seide et al. 2014 (1-bit SGD); Stich et al. 2018; Karimireddy et al. 2019:
    p = x + e;  send C(p);  e <- p - decompress(C(p)).
Mass is conserved: sum_t decompress(C(p_t)) + e_T = sum_t x_t (exactly, up to rounding).
The residual lives in `state["error"]` (one state dict per tensor per worker).
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from coders.compressors.payload import Compressor, Payload

__all__ = ["ErrorFeedback"]


class ErrorFeedback(Compressor):
    """C_EF(x) = C(x + e), e <- x + e - C(x + e)."""

    linear = False
    unbiased = False

    def __init__(self, compressor: Compressor):
        if not isinstance(compressor, Compressor):
            raise ValueError(f"ErrorFeedback needs a Compressor, got {type(compressor).__name__}")
        self.compressor = compressor
        self.name = f"ef-{compressor.name}"
        self.linear = compressor.linear

    def compress(self, x: Tensor, state: dict | None = None) -> Payload:
        if state is None:
            raise ValueError("ErrorFeedback.compress needs a state dict to keep the residual in")
        e = state.get("error")
        p = x.detach().clone() if e is None else x.detach() + e
        inner = state.setdefault("inner", {})
        for k in ("key",):
            if k in state:
                inner[k] = state[k]
        payload = self.compressor.compress(p, inner)
        state["error"] = p - self.compressor.decompress(payload)
        return payload

    def decompress(self, payload: Payload) -> Tensor:
        return self.compressor.decompress(payload)

    def entropy_symbols(self, payload: Payload) -> tuple[list[np.ndarray], int] | None:
        """The inner operator's symbols: the residual never travels."""
        return self.compressor.entropy_symbols(payload)
