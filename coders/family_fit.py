"""The family behind a codebook or a quantizer: a gradstats family object, fitted to values
(`gradstats.fit`, the continuous MLE) or given as is.

`as_family` is the one place an outside distribution enters `coders`: a `gradstats.families`
family is used as is, a frozen `scipy.stats` distribution is wrapped (`FrozenScipy`: its cdf, not
rebuildable from bf16 parameters), anything else is a ValueError.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.stats

from gradstats.families import Family


class FrozenScipy(Family):
    """A frozen `scipy.stats` distribution seen as a family: cells by differences of its cdf.

    Its parameters are not named, so a decoder cannot rebuild it from bf16 values: a model from
    it pays 32 bits per argument (`n_params`).
    """

    param_names = ()

    def __init__(self, frozen: Any) -> None:
        self._frozen = frozen
        self.name = type(frozen).__name__.lower()  # type: ignore[misc]

    @property
    def n_params(self) -> int:
        return len(self._frozen.args) + len(self._frozen.kwds)

    @property
    def center(self) -> float:
        return float(self._frozen.median())

    def __repr__(self) -> str:
        return f"FrozenScipy({self._frozen.dist.name}{self._frozen.args}{self._frozen.kwds})"

    def interval_probs(self, edges: Any) -> np.ndarray:
        """F(edges[i+1]) - F(edges[i])."""
        return np.diff(np.asarray(self._frozen.cdf(np.asarray(edges, dtype=np.float64)), dtype=np.float64))


def as_family(dist: Any) -> Family:
    """`dist` as a gradstats family (a frozen scipy distribution wrapped); ValueError otherwise."""
    if isinstance(dist, Family):
        return dist
    if isinstance(dist, scipy.stats._distn_infrastructure.rv_frozen):
        return FrozenScipy(dist)
    raise ValueError(f"expected a gradstats family (gradstats.families) or a frozen scipy.stats "
                     f"distribution, got {type(dist).__name__}")


def fit_with_flags(values: np.ndarray, family: Any,
                   loc: str | float = "fit") -> tuple[Family, tuple[str, ...]]:
    """(family, flags of the fit): a family name is fitted to `values` by `gradstats.fit`
    (continuous MLE, `loc` as there); a distribution is returned as is with no flags."""
    if not isinstance(family, str):
        return as_family(family), ()
    v = np.asarray(values)
    if v.size == 0:
        raise ValueError(f"fit_dist: cannot fit {family} to an empty input")
    if float(v.max()) == float(v.min()):
        raise ValueError(f"fit_dist: cannot fit {family}: input has one distinct value")
    from gradstats.fitting import fit

    result = fit(v, family=family, loc=loc)
    if result.dist is None:
        raise ValueError(f"fit_dist: {family} fit is degenerate: {'; '.join(result.flags)}")
    return result.dist, tuple(result.flags)


def fit_dist(values: np.ndarray, family: Any, loc: str | float = "fit") -> Family:
    """A family: `family` itself if it is a distribution, else `gradstats.fit(values, family).dist`."""
    return fit_with_flags(values, family, loc)[0]
