"""Parametric codebooks on real gradients: continuous fit vs code-length fit, ANS vs Huffman, vs entropy.

    python benchmarks/bench_codebooks.py [--workloads digits-cnn,stdlib-lm,mlp] [--steps 20]
        [--mults 0.1,0.25,0.5,1,2] [--families normal,laplace,gennorm,t,zi-gennorm] [--repeats 2]
    python benchmarks/bench_codebooks.py --time-only --capture DIR   # code_capture CPU seconds only

Each workload (`captures.capture_workload`, seed 0) is trained `--steps` steps and its gradients
at the last recorded step are coded layer by layer with `UniformQuantizer(scale_mult=c)` (step
c x RMS of the layer). Table per workload: whole-model bits per entry (payload + model side
information, summed over layers / entries) of each family x fit ("values": continuous MLE of the
values, "codelength": fitted to the symbols under the cells) x coder, against the plug-in entropy
and the histogram oracle; then the largest gap to the entropy of zi-gennorm (code-length) over
the layers of >= 10k entries. Timing: CPU seconds of `code_capture` with the demo's models and
ANS + Huffman (verify on) for fit="codelength" vs fit="values", best of `--repeats`, same process; and
the mean CPU time of one code-length fit per (layer, family).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from coders.quantizers import UniformQuantizer
from coders.report import bits_per_entry, code_capture

TIMED_MODELS = ("histogram", "normal", "laplace", "gennorm", "zi-gennorm")
"""What `gradstats demo` codes (analysis.demo.DemoConfig.models), with ANS and Huffman."""


def capture(name: str, root: Path, steps: int):
    from captures.workloads import capture_workload

    every = max(1, steps // 2)
    return capture_workload(name, root / name, steps=steps, every=every, progress=False)


def codebook_table(cap, mults, families, coders) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """(whole-model bits per entry: rows family/fit, columns c/coder; zi-gennorm gaps on big layers;
    mean CPU seconds of one code-length fit)."""
    from coders.models import Codebooks  # here: --time-only also runs on trees without it
    step = cap.steps[-1]
    specs = ["histogram"] + [f"{f}:{fit}" for f in families for fit in ("values", "codelength")]
    sums: dict[tuple, list[float]] = {}
    big_gaps, fit_seconds = [], []
    for layer in cap.layers:
        x = np.asarray(cap.get(layer, step), dtype=np.float32).ravel()
        for c in mults:
            df = bits_per_entry(x, UniformQuantizer(scale_mult=c), models=specs, coders=coders,
                                verify=False, select=False)
            for r in df.itertuples():
                key = (c, r.model, r.coder)
                acc = sums.setdefault(key, [0.0, 0.0, 0.0])
                acc[0] += r.payload_bits + r.side_bits
                acc[1] += r.n
                acc[2] += r.entropy * r.n
            if x.size >= 10_000:
                z = df[(df["model"] == "zi-gennorm:codelength") & (df["coder"] == coders[0])].iloc[0]
                big_gaps.append({"layer": layer, "c": c, "n": x.size, "gap_entropy": z["gap_entropy"]})
        q = UniformQuantizer(scale_mult=0.5)
        qz = q.quantize(x)
        cb = Codebooks(qz, q.normalize(x))
        for f in families:
            try:
                cb.model(f)
            except ValueError:
                continue
        fit_seconds += [v.seconds for v in cb.fits.values()]
    rows = {}
    for (c, model, coder), (bits, n, hn) in sums.items():
        rows.setdefault(model, {})[f"c={c:g} {coder}"] = bits / n
        rows.setdefault("entropy", {})[f"c={c:g} {coder}"] = hn / n
    table = pd.DataFrame(rows).T
    order = ["entropy", "histogram"] + [s for s in specs if s != "histogram"]
    return table.loc[order], pd.DataFrame(big_gaps), float(np.mean(fit_seconds)) if fit_seconds else np.nan


def time_code_capture(cap, repeats: int) -> dict[str, float]:
    """Best CPU seconds of `code_capture` (`TIMED_MODELS`, ANS and Huffman) per fit."""
    out = {}
    for fit in ("values", "codelength"):
        best = np.inf
        for _ in range(repeats):
            t = time.process_time()
            try:
                code_capture(cap, models=TIMED_MODELS, coders=("ans", "huffman"), fit=fit)
            except TypeError:  # a tree before the code-length fit: no `fit` keyword
                code_capture(cap, models=TIMED_MODELS, coders=("ans", "huffman"))
            best = min(best, time.process_time() - t)
        out[fit] = best
    return out


def markdown(df: pd.DataFrame) -> str:
    """A DataFrame as a GitHub table (index first), 4 decimals."""
    head = "| | " + " | ".join(map(str, df.columns)) + " |"
    rule = "|---" * (len(df.columns) + 1) + "|"
    body = ["| " + str(i) + " | " + " | ".join(f"{v:.4f}" for v in row) + " |" for i, row in df.iterrows()]
    return "\n".join([head, rule, *body])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="digits-cnn,stdlib-lm,mlp")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--mults", default="0.1,0.25,0.5,1,2")
    ap.add_argument("--families", default="normal,laplace,gennorm,t,zi-gennorm")
    ap.add_argument("--coders", default="ans,huffman")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--time-only", action="store_true")
    ap.add_argument("--capture", default=None, help="code this capture directory (with --time-only)")
    args = ap.parse_args()
    print(f"machine: {platform.machine()} {platform.processor() or ''}, python {platform.python_version()}")
    if args.time_only:
        from captures import open_capture

        cap = open_capture(args.capture)
        t = time_code_capture(cap, args.repeats)
        times = ", ".join(f"{k} {v:.2f}" for k, v in t.items())
        print(f"code_capture CPU s (best of {args.repeats}): {times}")
        return
    mults = [float(m) for m in args.mults.split(",")]
    families = args.families.split(",")
    coders = args.coders.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.workloads.split(","):
            cap = capture(name, Path(tmp), args.steps)
            table, gaps, fit_s = codebook_table(cap, mults, families, coders)
            t = time_code_capture(cap, args.repeats)
            n = sum(int(np.prod(cap.shapes[k])) for k in cap.layers)
            print(f"\n### {name} (step {cap.steps[-1]}, {len(cap.layers)} layers, {n} entries)\n")
            print(markdown(table))
            if not gaps.empty:
                worst = gaps.loc[gaps["gap_entropy"].idxmax()]
                print(f"\nzi-gennorm (code-length, {coders[0]}) on layers >= 10k entries: largest gap to "
                      f"entropy {100 * worst['gap_entropy']:+.2f}% ({worst['layer']}, c={worst['c']:g}); "
                      "per c: " + ", ".join(f"{c:g}: {100 * g:+.2f}%" for c, g in
                                            gaps.groupby('c')['gap_entropy'].max().items()))
            print(f"\none code-length fit (c=0.5): {1e3 * fit_s:.1f} ms CPU on average; code_capture CPU s "
                  f"(best of {args.repeats}, models {','.join(TIMED_MODELS)}): values "
                  f"{t['values']:.2f}, codelength {t['codelength']:.2f}")


if __name__ == "__main__":
    main()
