"""Decentralized training benchmark: accuracy and consensus distance vs steps and vs bits, per gossip method.

Trains digits-cnn with every method of `GOSSIP_METHODS` (default options) on a ring and a 2-D
torus of 8 and 16 workers in the thread simulator and writes
- a long CSV (one row per method x topology x evaluation step: accuracy of the averaged model,
  consensus distance (1/W) sum_i ||x_i - x_bar||^2, cumulative bits sent per worker), and
- a Markdown summary (stdout): accuracy and consensus distance at a few steps, bits per worker
  per step, total MB per worker, and the bits / steps each method needed to reach target accuracies.

Run by hand (not a test):
    python benchmarks/bench_gossip.py --steps 200 --out /tmp/gossip_results.csv
A method may carry options after "@", e.g. `powergossip@rank=2@num_iterations=2`, `dpsgd@gamma=1`.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import pandas as pd
import torch

from coders.algorithms.gossip import GOSSIP_METHODS
from coders.communication.topology import Topology, make_topology
from coders.runtime.train import train


def run_grid(methods: list[str], topologies: list[str], workers: list[int], steps: int, eval_every: int,
             lr: float, seed: int, split: str, workload: str) -> pd.DataFrame:
    """One training run per (topology, workers, method); long DataFrame of the evaluation rows."""
    frames = []
    for n in workers:
        for topo_name in topologies:
            topo = make_topology(topo_name, n)
            for label in methods:
                method, options = parse_method(label)
                tic = time.perf_counter()
                res = train(workload, method, workers=n, steps=steps, topology=topo_name, lr=lr, seed=seed,
                            eval_every=eval_every, split=split, options=options)
                h = res.history.copy()
                h["bits_cum"] = h["bits_up"].cumsum()
                cols = ["step", "metric", "consensus_distance", "bits_cum", "bits_up"]
                ev = h.dropna(subset=["metric"])[cols]
                ev = ev.assign(method=label, topology=topo.name, workers=n,
                               gamma=_gamma(method, topo, options), seconds=time.perf_counter() - tic,
                               bits_per_step=float(h["bits_up"].mean()))
                frames.append(ev)
                last = ev.iloc[-1]
                print(f"# {topo.name:10s} {label:14s} acc={last['metric']:.4f} "
                      f"cd={last['consensus_distance']:.3g} {time.perf_counter() - tic:.1f}s", flush=True)
    return pd.concat(frames, ignore_index=True)


def parse_method(label: str) -> tuple[str, dict[str, Any]]:
    """`name@key=value@...` -> (name, options); values become bool / int / float where they parse."""
    name, *items = label.split("@")
    if name not in GOSSIP_METHODS:
        raise ValueError(f"unknown gossip method {name!r}; choose one of {sorted(GOSSIP_METHODS)}")
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"method option {item!r} is not key=value")
        value: Any = text
        if text in ("True", "False"):
            value = text == "True"
        else:
            for cast in (int, float):
                try:
                    value = cast(text)
                    break
                except ValueError:
                    pass
        options[key] = value
    return name, options


def _gamma(method: str, topo: Topology, options: dict[str, Any]) -> float:
    g = options.get("gamma", GOSSIP_METHODS[method].default_gamma)
    return topo.optimal_gossip_step if g == "optimal" else float(g)


def summarize(df: pd.DataFrame, at_steps: list[int], targets: list[float]) -> pd.DataFrame:
    """One row per (topology, method): metric / consensus at given steps, bits, and cost to reach targets."""
    rows = []
    for (topo, n, method), g in df.groupby(["topology", "workers", "method"], sort=False):
        g = g.sort_values("step")
        row = {"topology": topo, "workers": n, "method": method, "gamma": g["gamma"].iloc[0],
               "kbit/step/worker": g["bits_per_step"].iloc[0] / 1e3,
               "MB/worker total": g["bits_cum"].iloc[-1] / 8e6}
        for s in at_steps:
            at = g[g["step"] <= s].iloc[-1]
            row[f"acc@{s}"] = at["metric"]
            row[f"cons@{s}"] = at["consensus_distance"]
        for t in targets:
            hit = g[g["metric"] >= t]
            row[f"MB to {t:.0%}"] = hit["bits_cum"].iloc[0] / 8e6 if len(hit) else math.nan
            row[f"steps to {t:.0%}"] = int(hit["step"].iloc[0]) if len(hit) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table of `df` (numbers to 4 significant digits)."""
    def cell(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default=",".join(GOSSIP_METHODS))
    p.add_argument("--topologies", default="ring,torus")
    p.add_argument("--workers", default="8,16")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="iid", help="iid | label-skew")
    p.add_argument("--workload", default="digits-cnn")
    p.add_argument("--targets", default="0.9,0.95")
    p.add_argument("--out", default=None, help="CSV of every evaluation row")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    workers = [int(w) for w in args.workers.split(",")]
    df = run_grid(args.methods.split(","), args.topologies.split(","), workers, args.steps, args.eval_every,
                  args.lr, args.seed, args.split, args.workload)
    if args.out:
        df.to_csv(args.out, index=False)
    at = sorted({args.steps // 4, args.steps // 2, args.steps})
    summary = summarize(df, at, [float(t) for t in args.targets.split(",")])
    print(markdown_table(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
