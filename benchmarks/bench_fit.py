"""Benchmark: GenNorm MLE of gradstats.fit against scipy.stats.gennorm.fit on float32 samples.

    python benchmarks/bench_fit.py [--sizes 1e5,1e6,1e7] [--betas 0.8,1.5] [--scipy-max 1e6] [--repeat 3]
                                   [--scipy-repeat 2]

For each size, shape and loc mode (fixed at 0 / fitted) it prints the best-of-`repeat` seconds
of `gradstats.fit(x, "gennorm")` on float32 input, the seconds of `scipy.stats.gennorm.fit` on the
same values in float64 (best of `--scipy-repeat`, only up to `--scipy-max` entries: scipy at 1e7
takes minutes),
the beta each found, the speed-up, and the time of one `np.abs(x).sum()` pass over the float32
sample, the unit in which "a few passes over memory" is counted.

Times are CPU seconds of this process (`time.process_time`, one thread: OMP/BLAS threads are
pinned to 1 below), which stay meaningful on a shared machine where other jobs inflate wall time;
the wall-clock seconds of our fit are printed too.
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
import scipy  # noqa: E402
import scipy.stats as st  # noqa: E402

from gradstats import fit  # noqa: E402


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _best_of(fn, repeat: int) -> tuple[float, float, object]:
    """(best CPU seconds, best wall seconds, result) over `repeat` calls."""
    cpu, wall, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        t, w = time.process_time(), time.perf_counter()
        out = fn()
        cpu, wall = min(cpu, time.process_time() - t), min(wall, time.perf_counter() - w)
    return cpu, wall, out


def run(sizes: list[int], betas: list[float], scipy_max: int, repeat: int, scipy_repeat: int) -> pd.DataFrame:
    rows = []
    for n in sizes:
        for beta in betas:
            x = st.gennorm.rvs(beta, scale=1e-3, size=n, random_state=0).astype(np.float32)
            t_pass, _, _ = _best_of(lambda x=x: np.abs(x).sum(), max(repeat, 10))
            for loc in (0.0, "fit"):
                t_ours, w_ours, f = _best_of(lambda x=x, loc=loc: fit(x, "gennorm", loc=loc), repeat)
                row = {"n": n, "beta_true": beta, "loc": loc, "ours_s": t_ours, "ours_wall_s": w_ours,
                       "ours_beta": f.params["beta"], "abs_sum_pass_s": t_pass,
                       "ours_in_passes": t_ours / t_pass}
                if n <= scipy_max:
                    x64 = x.astype(np.float64)
                    kw = {"floc": 0.0} if loc == 0.0 else {}
                    t_sp, _, (b, lo, s) = _best_of(lambda x64=x64, kw=kw: st.gennorm.fit(x64, **kw),
                                                   scipy_repeat)
                    row["scipy_s"] = t_sp
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
    ap.add_argument("--scipy-repeat", type=int, default=2)
    args = ap.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    betas = [float(b) for b in args.betas.split(",")]
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}")
    df = run(sizes, betas, int(args.scipy_max), args.repeat, args.scipy_repeat)
    print()
    print(df.to_string(index=False, float_format=_fmt))


if __name__ == "__main__":
    main()
