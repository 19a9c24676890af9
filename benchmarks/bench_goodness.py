"""Benchmark: the distance statistics (KS, AD, W1) of one sorted sample, per family, two ways.

    python benchmarks/bench_goodness.py [--n 200000] [--betas 0.3,0.64,1.5] [--repeat 7]

For GenNorm at each beta (fitted to its own draws: float32 values, as gradients are stored),
Normal and Laplace on the same sample, it prints the best-of-`repeat` CPU milliseconds of
- `exact`: every point evaluated with `Family.cdf_logs` and the closed-form integral of F
  (`goodness._cdf_integral`). For GenNorm that is three incomplete gammas a point, where the code
  before `gradstats.sorted_cdf` took F from cdf_logs for the integral and so needed two: read
  `exact_ms` as an upper bound of the old cost (RESULTS.md quotes the old code itself);
- `distances`: `goodness.distances` now (GenNorm interpolated along the sample, checked per
  block; Normal and Laplace exact in one in-place pass),
their ratio, the largest relative difference of the three statistics between the two, and the
share of points `sorted_cdf` evaluated exactly. The unit beside them is one `np.abs(y).sum()`
pass over the float64 sample.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from bench_pipeline import _markdown  # noqa: E402  (the same table format as the pipeline benchmark)

from gradstats import fit  # noqa: E402
from gradstats import goodness as gof  # noqa: E402
from gradstats.families import GenNorm, ZeroInflated  # noqa: E402
from gradstats.sorted_cdf import sorted_cdf  # noqa: E402


def exact_distances(y: np.ndarray, dist) -> dict[str, float]:
    """KS, AD, W1 with F, log F, log S from `cdf_logs` and Phi in closed form at every point."""
    base = dist.base if isinstance(dist, ZeroInflated) else dist
    f, log_f, log_s = base.cdf_logs(y)
    phi = gof._cdf_integral(base, y)
    return {"ks": gof._ks_sorted(y, dist, f), "ad": gof._ad_sorted(y, dist, (log_f, log_s)),
            "w1": gof._w1_sorted(y, dist, f, phi)}


def best_ms(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return 1e3 * best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--betas", default="0.3,0.64,1.5")
    p.add_argument("--repeat", type=int, default=7)
    a = p.parse_args()
    rows = []
    for beta in (float(b) for b in a.betas.split(",")):
        x = GenNorm(beta, 0.0, 1e-3).sample(a.n, 0).astype(np.float32)
        y = np.sort(x.astype(np.float64))
        unit = best_ms(lambda y=y: float(np.abs(y).sum()), a.repeat)
        for family in ("normal", "laplace", "gennorm"):
            d = fit(x, family).dist
            ref = exact_distances(y, d)
            sample = gof.Sample(y, None)

            def now(sample=sample, d=d):
                sample._distances.clear()
                return gof.distances(sample, d, None)

            got = now()
            t_exact = best_ms(lambda y=y, d=d: exact_distances(y, d), a.repeat)
            t_now = best_ms(now, a.repeat)
            rows.append({"sample_beta": beta, "family": family, "n": a.n, "exact_ms": t_exact,
                         "distances_ms": t_now, "speedup": t_exact / t_now,
                         "max_rel_diff": max(abs(got[k] - ref[k]) / abs(ref[k]) for k in ref),
                         "exact_share": sorted_cdf(d, y).exact / y.size, "pass_ms": unit})
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; CPU ms, best of {a.repeat}")
    print(_markdown(pd.DataFrame(rows)))


if __name__ == "__main__":
    main()
