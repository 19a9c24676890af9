"""gradstats: statistics of gradients for compression research (stage 2 and the public facade).

Families (`Normal`, `Laplace`, `GenNorm`, `StudentT`, `ZeroInflated`), fits (`fit`, `fit_all`,
`fit_capture`, `Fit`, `summarize_fits`, `bootstrap_beta`), goodness of fit (`ks_statistic`,
`anderson_darling`, `wasserstein1`, `nll_bits`, `tail_error`, `qq_data`, `goodness_of_fit`) and
`open_capture` (from `captures`). Names are imported on first use so that `gradstats --help` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Family": "gradstats.families",
    "Normal": "gradstats.families",
    "Laplace": "gradstats.families",
    "GenNorm": "gradstats.families",
    "StudentT": "gradstats.families",
    "ZeroInflated": "gradstats.families",
    "FAMILIES": "gradstats.families",
    "Fit": "gradstats.estimation",
    "fit": "gradstats.estimation",
    "fit_all": "gradstats.tables",
    "fit_capture": "gradstats.capture_fits",
    "summarize_fits": "gradstats.capture_fits",
    "rank_spread": "gradstats.capture_fits",
    "bootstrap_beta": "gradstats.estimation",
    "ks_statistic": "gradstats.goodness",
    "anderson_darling": "gradstats.goodness",
    "wasserstein1": "gradstats.goodness",
    "nll_bits": "gradstats.goodness",
    "tail_error": "gradstats.goodness",
    "qq_data": "gradstats.goodness",
    "goodness_of_fit": "gradstats.goodness",
    "open_capture": "captures",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gradstats' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
