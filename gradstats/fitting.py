"""The fitting facade of gradstats: `fit` (one family, one sample), `fit_all` (several families),
`fit_capture` (every record of a capture), `summarize_fits`, `bootstrap_beta`.

Where the work is done:
- `gradstats.families`: each family owns its estimator (`Family.estimate` / `Family.fit`):
  Normal and Laplace in closed form, GenNorm by `gradstats.gennorm_solver` (profile likelihood in
  beta, loc searches in `gradstats.gennorm_loc`), StudentT by `gradstats.studentt_solver`,
  ZeroInflated(base) with pi = fraction of exact zeros and the base fitted on the non-zeros.
- `gradstats.arrays`: the numpy / torch backend (chunked float64 reductions on the data's device).
- `gradstats.estimation`: the `Fit` record and `fit`; `gradstats.tables`: `fit_all`;
  `gradstats.capture_fits`: `fit_capture` (serial, process pool, CUDA) and `summarize_fits`.
"""
from __future__ import annotations

from gradstats.arrays import CHUNK, SUBSAMPLE, prepare
from gradstats.capture_fits import fit_capture, fit_record, rank_spread, summarize_fits
from gradstats.estimation import SMALL_N, Fit, bootstrap_beta, fit
from gradstats.gennorm_solver import (
           BETA_BOUNDS,
           JOINT_MIN_BETA,
           gennorm_beta_from_ratio,
           gennorm_moment_ratio,
)
from gradstats.studentt_solver import DF_BOUNDS
from gradstats.tables import PARAM_COLUMNS, fit_all

__all__ = ["BETA_BOUNDS", "CHUNK", "DF_BOUNDS", "JOINT_MIN_BETA", "PARAM_COLUMNS", "SMALL_N", "SUBSAMPLE",
           "Fit", "bootstrap_beta", "fit", "fit_all", "fit_capture", "fit_record", "gennorm_beta_from_ratio",
           "gennorm_moment_ratio", "prepare", "rank_spread", "summarize_fits"]
