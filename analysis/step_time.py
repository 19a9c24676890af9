"""Modelled time per step of each method at each bandwidth, for the workload and projected model sizes.

For the workload itself: the bits per step measured in training, the codec time measured in
isolation on its parameters (`analysis.codec_cost`), the compute measured for one worker. For a
projection to P parameters (`model_params`, e.g. 124M, 1.5B), every per-entry quantity is taken
from the largest synthetic layer of the codec table and scaled by P:

    bits_up(P)  = P * bits_up / entries        codec(P) = P * codec_s / entries
    compute(P)  = compute_s * P / P_workload   (same batch, same machine: compute is linear in P)

and priced by `analysis.network` (`comm_time`, `iteration_time` with the method's overlap).
A model made of layers like the largest measured one is the assumption; low-rank methods send
r (m + n) numbers per m x n layer, so their bits per entry depend on the layer shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.codec_cost import WORKLOAD_LAYER
from analysis.network import Network, comm_time, iteration_time

BANDWIDTHS_GBPS: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
TABLE_BANDWIDTHS_GBPS: tuple[float, ...] = (1.0, 10.0, 100.0)
SUMMARY_COLUMNS = ("method", "pattern", "workers", "degree", "bits_up", "bits_down", "compute_s",
                   "can_overlap", "latency_us", "params")


def params_label(n: float) -> str:
    """124000000 -> "124M", 1.5e9 -> "1.5B", 38282 -> "38.3k"."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{int(n)}"


def parse_params(text: str | float | int) -> int:
    """"124M" / "1.5B" / "38k" / 1e6 -> a parameter count; ValueError naming the bad value."""
    if isinstance(text, int | float):
        value = float(text)
    else:
        t = str(text).strip().upper()
        mult = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9}.get(t[-1:], 1.0)
        try:
            value = float(t[:-1] if mult != 1.0 else t) * mult
        except ValueError:
            raise ValueError(f"model size {text!r} is not a count such as 124M, 1.5B or 38000") from None
    if not (value >= 1 and np.isfinite(value)):
        raise ValueError(f"model size must be a positive count of parameters, got {text!r}")
    return int(round(value))


def _per_entry(codec: pd.DataFrame, method: str) -> pd.Series:
    """The codec row of `method` on its largest synthetic layer."""
    rows = codec[(codec["method"] == method) & (codec["layer"] != WORKLOAD_LAYER)]
    if rows.empty:
        raise ValueError(f"codec table has no synthetic-layer row for {method!r} to project from")
    return rows.loc[rows["entries"].idxmax()]


def step_times(summary: pd.DataFrame, codec: pd.DataFrame, model_params: Sequence[int] = (),
               bandwidths_gbps: Sequence[float] = BANDWIDTHS_GBPS, baseline: str = "bf16") -> pd.DataFrame:
    """One row per (workload, method, model, bandwidth): bits, compute, codec, comm and modelled step time.

    `summary` is `compare`'s (one row per method; `params` = the workload's parameter count),
    `codec` the isolated `codec_table`. `model` is "<workload> (<P>)" for the workload itself and
    "<P> projection" for each entry of `model_params`. `speedup_vs_bf16` is the baseline's step
    time over the method's at the same model and bandwidth.
    """
    missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
    if missing:
        raise ValueError(f"step_times: summary lacks columns {missing}")
    rows = []
    for _, r in summary.iterrows():
        wl = str(r["workload"]) if "workload" in r else "workload"
        p_wl = float(r["params"])
        own = codec[(codec["method"] == r["method"]) & (codec["layer"] == WORKLOAD_LAYER)]
        codec_wl = (float(own["codec_ms"].iloc[0]) / 1e3 if len(own)
                    else float(r.get("compress_s", 0.0) + r.get("decompress_s", 0.0)))
        cases = [(f"{wl} ({params_label(p_wl)})", p_wl, float(r["bits_up"]), float(r["bits_down"]), codec_wl,
                  float(r["compute_s"]))]
        for p in model_params:
            e = _per_entry(codec, r["method"])
            n = float(e["entries"])
            compute_p = float(r["compute_s"]) * p / p_wl
            cases.append((f"{params_label(p)} projection", float(p), p * e["bits_up"] / n,
                          p * e["bits_down"] / n, p * e["codec_ms"] / 1e3 / n, compute_p))
        degree = None if pd.isna(r["degree"]) else int(r["degree"])
        for model, p, up, down, codec_s, compute in cases:
            for bw in bandwidths_gbps:
                net = Network(float(bw), float(r["latency_us"]))
                comm = comm_time(r["pattern"], up, down, int(r["workers"]), net, degree)
                rows.append({"workload": wl, "method": r["method"], "model": model, "params": p,
                             "bandwidth_gbps": float(bw), "latency_us": net.latency_us, "bits_up": up,
                             "bits_down": down, "compute_s": compute, "codec_s": codec_s, "comm_s": comm,
                             "iter_s": iteration_time(compute, codec_s, comm, overlap=False),
                             "iter_overlap_s": iteration_time(compute, codec_s, comm,
                                                              bool(r["can_overlap"]))})
    df = pd.DataFrame(rows)
    base = df[df["method"] == baseline].set_index(["workload", "model", "bandwidth_gbps"])["iter_overlap_s"]
    keys = pd.MultiIndex.from_frame(df[["workload", "model", "bandwidth_gbps"]])
    df["speedup_vs_bf16"] = base.reindex(keys).to_numpy() / df["iter_overlap_s"].to_numpy()
    return df
