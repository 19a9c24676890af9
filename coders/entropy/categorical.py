"""constriction's categorical model of a `ProbabilityModel` (24-bit probabilities), built once,
and the exact fixed-point table it codes with.

`Categorical(probs, perfect=False)` quantizes the float table leakily to 24-bit weights: with
K entries and s = (2^24 - K) / sum p, the left cumulative of entry i is floor(s sum_{j<i} p_j) + i
(sequential float64 sums), so every entry keeps at least 2^-24 and the weights sum to 2^24.
`coded_probs` replicates that, so a cross-entropy computed from it is what ANS / range pay
(a test checks the payload against it on every row).
"""

from __future__ import annotations

from typing import Any

import numpy as np

PRECISION = 24
"""Bits of constriction's default categorical probabilities."""


def categorical(model: Any) -> Any:
    """`constriction.stream.model.Categorical(model.probs, perfect=False)`, cached on the model."""
    import constriction

    cat = model._cache.get("categorical")
    if cat is None:
        cat = model._cache["categorical"] = constriction.stream.model.Categorical(model.probs, perfect=False)
    return cat


def coded_probs(model: Any) -> np.ndarray:
    """The probabilities constriction's leaky 24-bit quantization gives the model's table (cached)."""
    q = model._cache.get("coded_probs")
    if q is None:
        p = np.asarray(model.probs, dtype=np.float64)
        k = p.size
        cum = np.cumsum(p)  # sequential, as constriction's running sum
        scale = float((1 << PRECISION) - k) / float(cum[-1])
        left = np.floor(np.concatenate([[0.0], cum[:-1]]) * scale).astype(np.int64) + np.arange(k)
        weights = np.diff(np.append(left, 1 << PRECISION))
        q = model._cache["coded_probs"] = np.ldexp(weights.astype(np.float64), -PRECISION)
    return q
