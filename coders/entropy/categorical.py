"""constriction's categorical model of a `ProbabilityModel` (24-bit probabilities), built once."""

from __future__ import annotations

from typing import Any


def categorical(model: Any) -> Any:
    """`constriction.stream.model.Categorical(model.probs, perfect=False)`, cached on the model."""
    import constriction

    cat = model._cache.get("categorical")
    if cat is None:
        cat = model._cache["categorical"] = constriction.stream.model.Categorical(model.probs, perfect=False)
    return cat
