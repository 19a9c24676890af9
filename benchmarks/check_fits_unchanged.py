"""Check: the fits of every record of a capture against a saved reference (e.g. main's code).

    PYTHONPATH=/work/main python benchmarks/check_fits_unchanged.py CAPTURE --save REF.json  # reference
    python benchmarks/check_fits_unchanged.py CAPTURE --against REF.json  # on the changed code

For each record (step, layer) it fits normal, laplace, gennorm (free loc) and the zi-gennorm base
(gennorm on the non-zero entries, only where the record has exact zeros) with `gradstats.fit`, and
stores the parameters, the standard error of beta (beta_se) and the log-likelihood. With --against
it prints the largest relative change of each of them over all records, and exits 1 when a parameter moved by
more than --param-rtol (1e-6) or a log-likelihood by more than --loglik-rtol (1e-9), relative.
A relative change of the loc is taken against the fitted scale (a loc near 0 has no relative
precision of its own).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from captures.store.reader import open_capture
from gradstats import fit

FAMILIES = ("normal", "laplace", "gennorm")


def record_fits(path: str) -> dict[str, dict]:
    """{'step/layer/family': {'params': ..., 'loglik': ..., 'seconds': ...}} for every record."""
    out: dict[str, dict] = {}
    for step, layer, x in open_capture(path):
        x = np.asarray(x).reshape(-1)
        samples = {"": x}
        if (x == 0).any() and (x != 0).any():
            samples["nonzero-"] = x[x != 0]
        for prefix, v in samples.items():
            for fam in FAMILIES if not prefix else ("gennorm",):
                t = time.process_time()
                f = fit(v, fam)
                params = {**f.params, **({"beta_se": f.se["beta"]} if "beta" in f.se else {})}
                out[f"{step}/{layer}/{prefix}{fam}"] = {"params": params, "loglik": f.loglik,
                                                         "seconds": time.process_time() - t, "n": len(v)}
    return out


def _rel(a: float, b: float, ref: float) -> float:
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    return abs(a - b) / abs(ref) if ref else math.inf


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("capture")
    p.add_argument("--save")
    p.add_argument("--against")
    p.add_argument("--param-rtol", type=float, default=1e-6)
    p.add_argument("--loglik-rtol", type=float, default=1e-9)
    a = p.parse_args()
    fits = record_fits(a.capture)
    if a.save:
        with open(a.save, "w") as f:
            json.dump(fits, f)
    if not a.against:
        return 0
    with open(a.against) as f:
        ref = json.load(f)
    worst: dict[str, tuple[float, str]] = {}
    t_new = {fam: 0.0 for fam in FAMILIES}
    t_ref = dict(t_new)
    for key, r in ref.items():
        new = fits[key]
        fam = key.rsplit("/", 1)[1].removeprefix("nonzero-")
        t_new[fam] += new["seconds"]
        t_ref[fam] += r["seconds"]
        scale = r["params"]["scale"]
        for name, v in r["params"].items():
            base = scale if name == "loc" else v
            d = _rel(new["params"].get(name, math.nan), v, base)
            if d > worst.get(name, (-1.0, ""))[0]:
                worst[name] = (d, key)
        d = _rel(new["loglik"], r["loglik"], r["loglik"])
        if d > worst.get("loglik", (-1.0, ""))[0]:
            worst["loglik"] = (d, key)
    bad = False
    for name, (d, key) in sorted(worst.items()):
        tol = a.loglik_rtol if name == "loglik" else a.param_rtol
        bad |= d > tol
        print(f"{name:8s} max rel change {d:.3g} (tol {tol:g}) at {key}")
    for fam in FAMILIES:
        print(f"{fam:8s} CPU s over all records: reference {t_ref[fam]:.3f}, now {t_new[fam]:.3f}")
    print(f"{len(ref)} fits compared: {'FAIL' if bad else 'ok'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
