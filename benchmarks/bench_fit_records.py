"""Benchmark: `gradstats.fit` per family on chosen records of a capture (CPU ms, best of N).

    python benchmarks/bench_fit_records.py CAPTURE [--records 0:blocks.0.mlp.0.weight,...]
                                           [--families normal,laplace,gennorm] [--repeat 3]

Prints, per record, its size, the CPU time of one `np.abs(x).sum()` pass over it, and the best CPU
time of `gradstats.fit(x, family)` (free loc) over `repeat` calls, with the GenNorm beta found.
Run it on two checkouts (PYTHONPATH=...) in the same minute to compare them: CPU times on a
shared machine move with its load. Threads are pinned to 1 (OMP/BLAS).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from captures.store.reader import open_capture  # noqa: E402
from gradstats import fit  # noqa: E402

DEFAULT_RECORDS = ("0:blocks.0.mlp.0.weight,0:blocks.0.attn.qkv.weight,0:blocks.0.attn.proj.weight,"
                   "1:blocks.2.mlp.2.weight,1:blocks.3.attn.qkv.weight")


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t)
    return best, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("capture")
    p.add_argument("--records", default=DEFAULT_RECORDS, help="comma-separated step:layer")
    p.add_argument("--families", default="normal,laplace,gennorm")
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    cap = open_capture(a.capture)
    for rec in a.records.split(","):
        step, layer = rec.split(":", 1)
        x = np.asarray(cap.get(layer, int(step))).reshape(-1)
        t_pass, _ = _best(lambda x=x: np.abs(x).sum(), max(a.repeat, 5))
        cells = [f"{step} {layer:28s} n={len(x):8d} |x|.sum {1e3 * t_pass:5.2f} ms"]
        for fam in a.families.split(","):
            t, f = _best(lambda x=x, fam=fam: fit(x, fam), a.repeat)
            beta = f" (beta {f.params['beta']:.3f})" if "beta" in f.params else ""
            cells.append(f"{fam} {1e3 * t:6.1f} ms{beta}")
        print("  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
