"""Benchmark: GenNorm MLE of gradstats.fit against scipy.stats.gennorm.fit on float32 samples.

    python benchmarks/bench_fit.py [--sizes 1e5,1e6,1e7] [--betas 0.8,1.5] [--scipy-max 1e6] [--repeat 3]

For each size, shape and loc mode (fixed at 0 / fitted) it prints the best-of-`repeat` seconds
of `gradstats.fit(x, "gennorm")` on float32 input, the seconds of `scipy.stats.gennorm.fit` on the
same values in float64 (run once, and only up to `--scipy-max` entries: scipy at 1e7 takes minutes),
the beta each found, the speed-up, and the time of one `np.abs(x).sum()` pass over the float32
sample, the unit in which "a few passes over memory" is counted.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import pandas as pd
import scipy
import scipy.stats as st

from gradstats import fit


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def run(sizes: list[int], betas: list[float], scipy_max: int, repeat: int) -> pd.DataFrame:
    rows = []
    for n in sizes:
        for beta in betas:
            x = st.gennorm.rvs(beta, scale=1e-3, size=n, random_state=0).astype(np.float32)
            t_pass, _ = _best_of(lambda x=x: np.abs(x).sum(), max(repeat, 5))
            for loc in (0.0, "fit"):
                t_ours, f = _best_of(lambda x=x, loc=loc: fit(x, "gennorm", loc=loc), repeat)
                row = {"n": n, "beta_true": beta, "loc": loc, "ours_s": t_ours, "ours_beta": f.params["beta"],
                       "abs_sum_pass_s": t_pass, "ours_in_passes": t_ours / t_pass}
                if n <= scipy_max:
                    x64 = x.astype(np.float64)
                    kw = {"floc": 0.0} if loc == 0.0 else {}
                    t0 = time.perf_counter()
                    b, lo, s = st.gennorm.fit(x64, **kw)
                    row["scipy_s"] = time.perf_counter() - t0
                    row["scipy_beta"] = b
                    row["speedup"] = row["scipy_s"] / t_ours
                    row["beta_rel_diff"] = abs(f.params["beta"] - b) / b
                    row["loglik_minus_scipy"] = f.loglik - float(st.gennorm.logpdf(x64, b, lo, s).sum())
                rows.append(row)
                print(pd.DataFrame([row]).to_string(index=False, float_format=_fmt), flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e5,1e6,1e7")
    ap.add_argument("--betas", default="0.8,1.5")
    ap.add_argument("--scipy-max", type=float, default=1e6, help="largest n given to scipy (it is slow)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    betas = [float(b) for b in args.betas.split(",")]
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}")
    df = run(sizes, betas, int(args.scipy_max), args.repeat)
    print()
    print(df.to_string(index=False, float_format=_fmt))


if __name__ == "__main__":
    main()
