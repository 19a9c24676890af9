"""End-to-end comparison of distributed compressors: accuracy, bits, overhead and network time.

Each method is trained with `coders.runtime.train` (the simulator by default, torch.distributed
with `backend="gloo"`), and its per-step history is turned into one summary row: final and
time-to-target metric, payload bits up/down per worker per step, measured compression overhead,
and an iteration time estimated under the alpha-beta network model of `analysis.network`
(re-exported here). The baseline is bf16 all-reduce, never fp32. `rate_distortion` /
`aggregate_rd` live in `analysis.rate_distortion` and are re-exported here too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.network import (  # noqa: F401  (re-exported: the network model's public names)
    BACKWARD_FRACTION,
    PATTERNS,
    Network,
    check_workers,
    comm_time,
    iteration_time,
    p2p_time,
    parameter_server_time,
    ring_allgather_time,
    ring_allreduce_time,
)
from analysis.rate_distortion import (  # noqa: F401  (re-exported)
    RD_COMPRESSORS,
    RD_MODELS,
    RD_STEP_MULTS,
    aggregate_rd,
    rate_distortion,
)

BASELINES = ("bf16", "fp16")  # the reference is a 16-bit all-reduce (fp32 flatters every compressor 2x)

# Whether a method's communication can run during the backward pass is a fact of its class
# (`can_overlap`, coders.algorithms.base.FACTS). This table only serves runs of names outside
# the registry (summaries built by hand): by pattern, a parameter server waits for every message.
OVERLAP_BY_PATTERN = {"allreduce": True, "allgather": True, "ps": False, "p2p": True}


def can_overlap(method: str, pattern: str) -> bool:
    """Whether `method`'s communication can overlap with the backward pass: its class's `can_overlap`.

    A name outside the method registry falls back to OVERLAP_BY_PATTERN.
    """
    from coders.algorithms.registry import METHODS, method_class

    if method in METHODS:
        return method_class(method).can_overlap
    if pattern not in OVERLAP_BY_PATTERN:
        raise ValueError(f"unknown communication pattern {pattern!r}; expected one of {PATTERNS}")
    return OVERLAP_BY_PATTERN[pattern]


# --------------------------------------------------------------------------------------------
# Summaries of training histories


def steps_to_target(history: pd.DataFrame, target: float, higher_is_better: bool = True) -> float:
    """First step at which the evaluated metric reaches `target` (NaN if never)."""
    h = history.dropna(subset=["metric"])
    hit = h["metric"] >= target if higher_is_better else h["metric"] <= target
    if not hit.any():
        return float("nan")
    return float(h.loc[hit.to_numpy(), "step"].iloc[0])


HISTORY_COLUMNS = ("step", "loss", "metric", "bits_up", "bits_down", "bits_wire", "compress_s",
                   "decompress_s", "step_s")


@dataclass
class MethodRun:
    """One method's training history and what the network model needs to know about it."""

    method: str
    history: pd.DataFrame
    pattern: str
    allreduce_compatible: bool
    workers: int
    degree: int | None = None
    metric_name: str = "accuracy"
    higher_is_better: bool = True
    extra: dict = field(default_factory=dict)


def summarize_runs(runs: Sequence[MethodRun], net: Network, compute_s: float,
                   target: float | None = None, baseline: str = "bf16",
                   codec: dict[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """One row per method: final/time-to-target metric, bits per step, overhead, estimated time.

    `target` defaults to 95% of the baseline's final accuracy (or 105% of its final loss for a
    lower-is-better metric). Bits are payload per worker per step, averaged over steps;
    compress / decompress seconds are medians over steps of the run, or `codec[method]` =
    (compress_s, decompress_s) measured in isolation (`analysis.codec_cost`) when given: those
    are charged, the in-run medians are kept as `compress_in_run_s` / `decompress_in_run_s`.
    """
    if not runs:
        raise ValueError("summarize_runs needs at least one run")
    for r in runs:
        missing = [c for c in HISTORY_COLUMNS if c not in r.history.columns]
        if missing:
            raise ValueError(f"history of {r.method!r} lacks columns {missing}")
    base = next((r for r in runs if r.method == baseline), None)
    if target is None:
        ref = base if base is not None else runs[0]
        final = ref.history["metric"].dropna()
        if final.empty:
            raise ValueError(f"run {ref.method!r} has no evaluated metric to set the target from")
        final = float(final.iloc[-1])
        target = 0.95 * final if ref.higher_is_better else 1.05 * final
    rows = []
    for r in runs:
        h = r.history
        bits_up = float(h["bits_up"].mean())
        bits_down = float(h["bits_down"].mean())
        # median over steps: the timings of W simulator threads sharing a few cores have a heavy
        # right tail (preemption), which the mean would charge to the method
        in_run = float(h["compress_s"].median()), float(h["decompress_s"].median())
        compress_s, decompress_s = codec[r.method] if codec and r.method in codec else in_run
        codec_s = compress_s + decompress_s
        comm_s = comm_time(r.pattern, bits_up, bits_down, r.workers, net, r.degree)
        overlap = can_overlap(r.method, r.pattern)
        iter_s = iteration_time(compute_s, codec_s, comm_s, overlap=False)
        iter_overlap_s = iteration_time(compute_s, codec_s, comm_s, overlap=overlap)
        metric = h["metric"].dropna()
        n_steps = steps_to_target(h, target, r.higher_is_better)
        rows.append({
            "method": r.method,
            "pattern": r.pattern,
            "allreduce_compatible": bool(r.allreduce_compatible),
            "can_overlap": overlap,
            "workers": r.workers,
            "degree": r.degree if r.degree is not None else np.nan,
            "steps": int(h["step"].max()) if len(h) else 0,
            "metric_name": r.metric_name,
            "final_metric": float(metric.iloc[-1]) if len(metric) else np.nan,
            "best_metric": (float(metric.max() if r.higher_is_better else metric.min())
                            if len(metric) else np.nan),
            "target": float(target),
            "steps_to_target": n_steps,
            "time_to_target_s": n_steps * iter_overlap_s,
            "bits_up": bits_up,
            "bits_down": bits_down,
            "bits_wire": float(h["bits_wire"].mean()),
            "compress_s": compress_s,
            "decompress_s": decompress_s,
            "compress_in_run_s": in_run[0],
            "decompress_in_run_s": in_run[1],
            "compute_s": float(compute_s),
            "comm_s": comm_s,
            "iter_s": iter_s,
            "iter_overlap_s": iter_overlap_s,
            "bandwidth_gbps": net.bandwidth_gbps,
            "latency_us": net.latency_us,
        })
    df = pd.DataFrame(rows)
    if base is not None:
        b = df.loc[df["method"] == baseline].iloc[0]
        df["up_ratio_vs_bf16"] = b["bits_up"] / df["bits_up"].replace(0, np.nan)
        df["speedup_vs_bf16"] = b["iter_overlap_s"] / df["iter_overlap_s"]
    else:
        df["up_ratio_vs_bf16"] = np.nan
        df["speedup_vs_bf16"] = np.nan
    return df


def bandwidth_sweep(summary: pd.DataFrame, bandwidths_gbps: Sequence[float] = (0.1, 0.3, 1, 3, 10, 30, 100),
                    latency_us: float | None = None) -> pd.DataFrame:
    """Estimated iteration time of each summarized method as the link bandwidth varies.

    Re-prices the measured bits and overheads of `summarize_runs` rows under Network(B, alpha)
    for each B; shows where a compressor starts to pay off against the bf16 baseline.
    """
    need = ("method", "pattern", "workers", "degree", "bits_up", "bits_down", "compress_s", "decompress_s",
            "compute_s", "can_overlap", "latency_us")
    missing = [c for c in need if c not in summary.columns]
    if missing:
        raise ValueError(f"bandwidth_sweep: summary lacks columns {missing}")
    rows = []
    for bw in bandwidths_gbps:
        for _, r in summary.iterrows():
            net = Network(float(bw), float(r["latency_us"] if latency_us is None else latency_us))
            degree = None if pd.isna(r["degree"]) else int(r["degree"])
            comm = comm_time(r["pattern"], r["bits_up"], r["bits_down"], int(r["workers"]), net, degree)
            codec = r["compress_s"] + r["decompress_s"]
            t = iteration_time(r["compute_s"], codec, comm, bool(r["can_overlap"]))
            rows.append({"method": r["method"], "bandwidth_gbps": float(bw), "latency_us": net.latency_us,
                         "comm_s": comm, "iter_overlap_s": t})
    df = pd.DataFrame(rows)
    if (summary["method"] == "bf16").any():
        base = df[df["method"] == "bf16"].set_index("bandwidth_gbps")["iter_overlap_s"]
        df["speedup_vs_bf16"] = df["bandwidth_gbps"].map(base) / df["iter_overlap_s"]
    return df


def history_frame(runs: Sequence[MethodRun], summary: pd.DataFrame) -> pd.DataFrame:
    """All histories stacked with a `method` column and the simulated wall time `time_s`.

    time_s = step * (estimated iteration time of that method), the x axis of accuracy vs time.
    """
    per = summary.set_index("method")["iter_overlap_s"]
    parts = []
    for r in runs:
        h = r.history.copy()
        h.insert(0, "method", r.method)
        h["time_s"] = h["step"] * float(per[r.method])
        h["bits_up_cum"] = h["bits_up"].cumsum()
        parts.append(h)
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------------------------
# Running the methods


def measure_compute_s(workload, batch_size: int | None = None, repeats: int = 10,
                      cpu_threads: int = 1) -> float:
    """Median wall time of one forward + backward pass of `workload.model` on one batch (seconds).

    On CPU it runs with `cpu_threads` intra-op threads (one worker's share of the machine; the
    simulator runs every worker as one thread), on CUDA it synchronizes around the pass.
    """
    import torch

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    model = workload.model
    dev = next(model.parameters()).device
    batches = workload.batches(rank=0, world_size=1, batch_size=batch_size)
    threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(cpu_threads)
    times = []
    try:
        for i in range(repeats + 1):
            batch = next(batches)
            model.zero_grad(set_to_none=True)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            workload.loss(model, batch).backward()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i > 0:  # the first pass pays one-off allocation costs
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
        model.zero_grad(set_to_none=True)
    return float(np.median(times))


# per-seed columns that are settings, not measurements: the first seed's value stands for all
SETTING_COLUMNS = ("workers", "degree", "steps", "bandwidth_gbps", "latency_us", "target")


def aggregate_seeds(per_seed: pd.DataFrame, baseline: str = "bf16") -> pd.DataFrame:
    """One row per method from `summarize_runs` rows of several seeds (column `seed`): means and spread.

    Measurements are averaged over seeds; `final_metric_std` / `_min` / `_max` give the spread
    (std with ddof = 1, NaN for one seed), `reached_seeds` how many seeds reached the target,
    `steps_to_target` the mean over those that did (NaN when none). Ratios and speedups are
    recomputed from the means.
    """
    if "seed" not in per_seed.columns or "method" not in per_seed.columns:
        raise ValueError("aggregate_seeds needs the columns 'seed' and 'method'")
    g = per_seed.groupby("method", sort=False)
    cols = [c for c in per_seed.columns if c not in ("method", "seed")]
    mean = [c for c in cols if c not in SETTING_COLUMNS and pd.api.types.is_numeric_dtype(per_seed[c])
            and not pd.api.types.is_bool_dtype(per_seed[c])]
    out = g[[c for c in cols if c not in mean]].first().join(g[mean].mean())[cols]
    out.insert(0, "seeds", g.size())
    for stat in ("std", "min", "max"):
        out[f"final_metric_{stat}"] = g["final_metric"].agg(stat)
    out["steps_to_target_std"] = g["steps_to_target"].std()
    out["reached_seeds"] = g["steps_to_target"].count()
    out["time_to_target_s"] = out["steps_to_target"] * out["iter_overlap_s"]
    if baseline in out.index:
        b = out.loc[baseline]
        out["up_ratio_vs_bf16"] = b["bits_up"] / out["bits_up"].replace(0, np.nan)
        out["speedup_vs_bf16"] = b["iter_overlap_s"] / out["iter_overlap_s"]
    return out.reset_index()


@dataclass
class Comparison:
    """Result of `compare`: the per-method summary, the stacked histories and the network model.

    `per_seed` holds one summary row per (method, seed), `codec` the isolated codec table
    (`analysis.codec_cost`), `step_times` the modelled step times per bandwidth and model size
    (`analysis.step_time`); `compute_s` is a number, or one per workload after `concat`.
    """

    summary: pd.DataFrame
    history: pd.DataFrame
    network: Network
    compute_s: float | dict[str, float]
    per_seed: pd.DataFrame | None = None
    codec: pd.DataFrame | None = None
    step_times: pd.DataFrame | None = None

    TABLES = {"per_seed": "compare_seeds.parquet", "codec": "codec.parquet",
              "step_times": "step_time.parquet"}

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write compare.parquet / .csv, compare_history.parquet, network.json and the optional tables."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"summary": out / "compare.parquet", "csv": out / "compare.csv",
                 "history": out / "compare_history.parquet", "network": out / "network.json"}
        self.summary.to_parquet(paths["summary"], index=False)
        self.summary.to_csv(paths["csv"], index=False)
        self.history.to_parquet(paths["history"], index=False)
        for attr, name in self.TABLES.items():
            frame = getattr(self, attr)
            if frame is not None:
                paths[attr] = out / name
                frame.to_parquet(paths[attr], index=False)
        meta = {**asdict(self.network), "model": self.network.describe(), "compute_s": self.compute_s}
        paths["network"].write_text(json.dumps(meta, indent=1))
        return paths

    @classmethod
    def concat(cls, comparisons: Sequence[Comparison]) -> Comparison:
        """Several workloads' comparisons (same network) as one: frames stacked, compute_s per workload."""
        if not comparisons:
            raise ValueError("Comparison.concat needs at least one comparison")
        nets = {c.network for c in comparisons}
        if len(nets) != 1:
            raise ValueError(f"comparisons use different networks: {sorted(map(str, nets))}")

        def stack(attr: str) -> pd.DataFrame | None:
            frames = [getattr(c, attr) for c in comparisons if getattr(c, attr) is not None]
            return pd.concat(frames, ignore_index=True) if frames else None

        compute = {}
        for c in comparisons:
            compute.update(c.compute_s if isinstance(c.compute_s, dict)
                           else {str(c.summary["workload"].iloc[0]): c.compute_s})
        return cls(stack("summary"), stack("history"), comparisons[0].network, compute, stack("per_seed"),
                   stack("codec"), stack("step_times"))


def compare(workload: str, methods: Iterable[str], workers: int = 8, steps: int = 200,
            backend: str = "sim", net: Network | None = None, topology: str | None = "ring",
            seed: int = 0, target: float | None = None, eval_every: int | None = None,
            options: dict[str, dict] | None = None, lrs: dict[str, float] | None = None,
            device: str = "cpu", baseline: str = "bf16",
            progress: Callable[[str], None] | None = None, seeds: Sequence[int] | None = None,
            model_params: Sequence[int] = (), codec_shapes: Sequence[Sequence[int]] | None = None,
            codec_steps: int = 10, codec_warmup: int = 3, isolate_codec: bool = True) -> Comparison:
    """Train each method on `workload` for each seed and summarize it under the network model.

    Gossip methods (pattern "p2p") run on `topology`; every other method ignores it.
    `options[method]` and `lrs[method]` override a method's options and learning rate.
    The `baseline` (bf16 or fp16 all-reduce, never fp32) is trained first when `methods` lacks it:
    the target metric (95% of the baseline's final accuracy averaged over `seeds`, 105% of its
    loss), the bit ratios and the speedups are relative to it. `seeds` (default: `[seed]`) train
    every method once per seed; the summary holds means and spread (`aggregate_seeds`).
    With `isolate_codec`, codec time is measured in isolation (`analysis.codec_cost`, on the
    workload and on layers of `codec_shapes`) and charged in the network model; `model_params`
    adds projected model sizes to the modelled step times (`analysis.step_time`).
    """
    from analysis.codec_cost import LAYER_SHAPES, codec_table
    from analysis.step_time import step_times
    from captures import make_workload
    from coders.algorithms.registry import method_class
    from coders.runtime.train import train

    methods = list(methods)
    if not methods:
        raise ValueError("compare needs at least one method")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES} (a 16-bit all-reduce), got {baseline!r}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods listed twice: {sorted({m for m in methods if methods.count(m) > 1})}")
    if baseline not in methods:
        methods.insert(0, baseline)
    check_workers(workers)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    seeds = [seed] if seeds is None else [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
    net = net or Network()
    options, lrs = options or {}, lrs or {}
    unknown = (set(options) | set(lrs)) - set(methods)
    if unknown:
        raise ValueError(f"options/lrs given for methods not compared: {sorted(unknown)}")
    wl = make_workload(workload, seed=seeds[0], device=device)
    by_seed: dict[int, list[MethodRun]] = {}
    for s in seeds:
        runs = by_seed[s] = []
        for m in methods:
            if progress:
                progress(m if len(seeds) == 1 else f"{m} (seed {s})")
            p2p = method_class(m).needs_topology
            res = train(workload, m, workers, steps, backend=backend, topology=topology if p2p else None,
                        seed=s, lr=lrs.get(m), options=options.get(m), eval_every=eval_every,
                        device=device)
            degree = _degree(topology, workers) if res.pattern == "p2p" else None
            runs.append(MethodRun(m, res.history, res.pattern, res.allreduce_compatible, workers, degree,
                                  metric_name=res.metric_name, higher_is_better=wl.higher_is_better,
                                  extra={"lr": res.lr, "seconds": res.seconds}))
    compute_s = measure_compute_s(wl)
    codec = None
    if isolate_codec:
        if progress:
            progress("codec time in isolation")
        shapes = LAYER_SHAPES if codec_shapes is None else codec_shapes
        codec = codec_table(methods, workload, workers, shapes, steps=codec_steps, warmup=codec_warmup,
                            options=options, seed=seeds[0], topology=topology or "ring", device=device)
        codec.insert(0, "workload", workload)
    own = codec[codec["layer"] == "workload"].set_index("method") if codec is not None else None
    charged = ({m: (own.loc[m, "compress_ms"] / 1e3, own.loc[m, "decompress_ms"] / 1e3) for m in methods}
               if own is not None else None)
    if target is None:
        finals = [r.history["metric"].dropna() for rs in by_seed.values() for r in rs if r.method == baseline]
        if any(f.empty for f in finals):
            raise ValueError(f"the baseline {baseline!r} has no evaluated metric to set the target from")
        mean = float(np.mean([float(f.iloc[-1]) for f in finals]))
        target = 0.95 * mean if wl.higher_is_better else 1.05 * mean
    n_params = sum(p.numel() for p in wl.model.parameters())
    per_seed, histories = [], []
    for s, runs in by_seed.items():
        summ = summarize_runs(runs, net, compute_s, target=target, baseline=baseline, codec=charged)
        summ.insert(0, "seed", s)
        per_seed.append(summ)
        histories.append(history_frame(runs, summ).assign(seed=s))
    runs = by_seed[seeds[0]]
    per_seed = pd.concat(per_seed, ignore_index=True)
    per_seed.insert(0, "workload", workload)
    summary = aggregate_seeds(per_seed, baseline)
    summary["optimizer"] = [optimizer_of(r.method, options.get(r.method)) for r in runs]
    summary["lr"] = [r.extra["lr"] for r in runs]
    summary["baseline"] = baseline
    # the resolution of steps_to_target: the first evaluated step of each run
    summary["eval_every"] = [int(r.history.dropna(subset=["metric"])["step"].iloc[0]) for r in runs]
    summary["backend"] = backend
    summary["params"] = n_params
    summary["seed_list"] = ",".join(map(str, seeds))
    history = pd.concat(histories, ignore_index=True)
    history.insert(0, "workload", workload)
    times = step_times(summary, codec, model_params, baseline=baseline) if codec is not None else None
    return Comparison(summary, history, net, compute_s, per_seed, codec, times)


def optimizer_of(method: str, options: dict | None = None) -> str:
    """The update rule a method applies after its communication, e.g. "Nesterov SGD, momentum 0.9".

    Read from the method's class defaults (`default_momentum`, `default_nesterov`, Signum's
    `default_beta`) and the options that override them, so the comparison states how each method
    was tuned: gossip methods step with their reference's local Nesterov momentum, sign methods with
    momentum before the sign (Signum, Bernstein et al. 2018) or none, MCM on the server's central model.
    """
    from functools import partial

    from coders.algorithms.registry import method_class, methods

    cls = method_class(method)
    factory = methods()[method]
    opts = {**(factory.keywords if isinstance(factory, partial) else {}), **(options or {})}
    if hasattr(cls, "default_beta"):  # Signum / signSGD: momentum enters before the sign
        beta = float(opts.get("beta", cls.default_beta))
        rule = f"Signum, momentum {beta:g} before the sign" if beta else "signSGD (no momentum)"
    else:
        mom = float(opts.get("momentum", cls.default_momentum))
        nesterov = bool(opts.get("nesterov", cls.default_nesterov)) and mom > 0
        sgd = "Nesterov SGD" if nesterov else "SGD"
        rule = "SGD (no momentum)" if mom == 0 else f"{sgd}, momentum {mom:g}"
    where = {"local": "local ", "server": "server ", "replicas": ""}[cls.optimizer_at]
    wd = float(opts.get("weight_decay", 0.0))
    return where + rule + (f", weight decay {wd:g}" if wd else "")


def _degree(topology: str | None, workers: int) -> int:
    """Largest number of neighbours of a worker on `topology` (the p2p cost is set by the busiest NIC)."""
    from coders.runtime.topology import make_topology

    topo = make_topology(topology or "ring", workers)
    return max(topo.degree(r) for r in range(workers))
