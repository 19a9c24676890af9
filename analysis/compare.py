"""End-to-end comparison of distributed compressors: accuracy, bits, overhead and network time.

Each method is trained with `coders.runtime.train` (the simulator by default, torch.distributed
with `backend="gloo"`), and its per-step history is turned into one summary row: final and
time-to-target metric, payload bits up/down per worker per step, measured compression overhead,
and an iteration time estimated under the alpha-beta (latency-bandwidth) network model

    T(message of S bits) = alpha + S / B                      (Hockney 1994)

with the collective costs of Thakur, Rabenseifner and Gropp (2005) for ring algorithms:

    ring all-reduce   2 (W-1) alpha + 2 (W-1)/W * S / B
    ring all-gather     (W-1) alpha +   (W-1)   * S / B
    parameter server  2 alpha + W (S_up + S_down) / B      (the server's link carries all W flows)
    point-to-point    alpha + deg * S_nbr / B                (one NIC shared by the deg neighbours)

The iteration time charges compute, compression and communication,
`t = t_fwd + t_bwd + t_codec + t_comm`, or `t_fwd + max(t_bwd, t_comm) + t_codec` for methods whose
communication can overlap with the backward pass (bucketed DDP-style hooks; gossip of x_t, which
does not depend on the gradient at x_t). The baseline is bf16 all-reduce, never fp32.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

PATTERNS = ("allreduce", "allgather", "ps", "p2p")
BASELINES = ("bf16", "fp16")  # the reference is a 16-bit all-reduce (fp32 flatters every compressor 2x)

# Whether a method's communication can run during the backward pass is a fact of its class
# (`can_overlap`, coders.algorithms.base.FACTS). This table only serves runs of names outside
# the registry (summaries built by hand): by pattern, a parameter server waits for every message.
OVERLAP_BY_PATTERN = {"allreduce": True, "allgather": True, "ps": False, "p2p": True}

# Share of one training step's compute spent in the backward pass (backward ~ 2x forward FLOPs).
BACKWARD_FRACTION = 2.0 / 3.0


@dataclass(frozen=True)
class Network:
    """Alpha-beta network: per-message latency alpha (s) and per-link bandwidth B (bit/s).

    Hockney's model T(S) = alpha + S / B; links are full duplex, every worker has one NIC.
    """

    bandwidth_gbps: float = 10.0
    latency_us: float = 5.0

    def __post_init__(self) -> None:
        if not (self.bandwidth_gbps > 0 and math.isfinite(self.bandwidth_gbps)):
            raise ValueError(f"bandwidth_gbps must be a positive finite number, got {self.bandwidth_gbps}")
        if not (self.latency_us >= 0 and math.isfinite(self.latency_us)):
            raise ValueError(f"latency_us must be a non-negative finite number, got {self.latency_us}")

    @property
    def alpha(self) -> float:
        """Latency per message in seconds."""
        return self.latency_us * 1e-6

    @property
    def bits_per_s(self) -> float:
        """Bandwidth in bit/s."""
        return self.bandwidth_gbps * 1e9

    def describe(self) -> str:
        """One line stating the model and its parameters."""
        return (f"alpha-beta network: {self.bandwidth_gbps:g} Gbit/s per link, {self.latency_us:g} us "
                "latency per message; ring all-reduce 2(W-1)/W*S, all-gather (W-1)*S, "
                "parameter server W*(S_up+S_down) at the server, p2p deg*S per worker")


def _check_workers(workers: int) -> None:
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers}")


def _check_bits(name: str, bits: float) -> None:
    if not (bits >= 0 and math.isfinite(bits)):
        raise ValueError(f"{name} must be a non-negative finite number of bits, got {bits}")


def ring_allreduce_time(bits: float, workers: int, net: Network) -> float:
    """Ring all-reduce of an S-bit message on W workers: 2(W-1) alpha + 2(W-1)/W * S/B.

    Reduce-scatter then all-gather, each W-1 rounds of S/W bits (Thakur et al. 2005).
    """
    _check_bits("bits", bits)
    _check_workers(workers)
    if workers == 1:
        return 0.0
    return 2 * (workers - 1) * net.alpha + 2 * (workers - 1) / workers * bits / net.bits_per_s


def ring_allgather_time(bits: float, workers: int, net: Network) -> float:
    """Ring all-gather of S bits from each of W workers: (W-1) alpha + (W-1) * S/B."""
    _check_bits("bits", bits)
    _check_workers(workers)
    if workers == 1:
        return 0.0
    return (workers - 1) * net.alpha + (workers - 1) * bits / net.bits_per_s


def parameter_server_time(bits_up: float, bits_down: float, workers: int, net: Network) -> float:
    """Parameter server round: 2 alpha + W (S_up + S_down) / B.

    The server's one link receives W uplink messages and sends W downlink copies (a unicast per
    worker); workers' own links are not the bottleneck.
    """
    _check_bits("bits_up", bits_up)
    _check_bits("bits_down", bits_down)
    _check_workers(workers)
    return 2 * net.alpha + workers * (bits_up + bits_down) / net.bits_per_s


def p2p_time(bits_per_neighbour: float, degree: int, net: Network) -> float:
    """Point-to-point exchange with `degree` neighbours: alpha + deg * S_nbr / B.

    The deg sends are posted together (one latency) and share the worker's link; receives use
    the other direction of the full-duplex link.
    """
    _check_bits("bits_per_neighbour", bits_per_neighbour)
    if int(degree) != degree or degree < 0:
        raise ValueError(f"degree must be a non-negative integer, got {degree}")
    if degree == 0:
        return 0.0
    return net.alpha + degree * bits_per_neighbour / net.bits_per_s


def comm_time(pattern: str, bits_up: float, bits_down: float, workers: int, net: Network,
              degree: int | None = None) -> float:
    """Communication time of one step for a method with the given pattern.

    `bits_up` is the payload one worker sends per step (for p2p: in total, over its `degree`
    neighbours), `bits_down` the payload it receives from a server (pattern "ps" only).
    """
    if pattern == "allreduce":
        return ring_allreduce_time(bits_up, workers, net)
    if pattern == "allgather":
        return ring_allgather_time(bits_up, workers, net)
    if pattern == "ps":
        return parameter_server_time(bits_up, bits_down, workers, net)
    if pattern == "p2p":
        if degree is None:
            raise ValueError("pattern 'p2p' needs the topology degree")
        return p2p_time(bits_up / degree if degree else 0.0, degree, net)
    raise ValueError(f"unknown communication pattern {pattern!r}; expected one of {PATTERNS}")


def iteration_time(compute_s: float, codec_s: float, comm_s: float, overlap: bool,
                   backward_fraction: float = BACKWARD_FRACTION) -> float:
    """Estimated time of one step: t_fwd + t_bwd + t_codec + t_comm, or t_fwd + max(t_bwd, t_comm) + t_codec.

    With overlap, communication runs while the backward pass computes the remaining buckets;
    compression still costs compute time on the worker.
    """
    for name, v in (("compute_s", compute_s), ("codec_s", codec_s), ("comm_s", comm_s)):
        if not (v >= 0 and math.isfinite(v)):
            raise ValueError(f"{name} must be a non-negative finite time, got {v}")
    if not 0.0 <= backward_fraction <= 1.0:
        raise ValueError(f"backward_fraction must be in [0, 1], got {backward_fraction}")
    if not overlap:
        return compute_s + codec_s + comm_s
    t_bwd = backward_fraction * compute_s
    return (compute_s - t_bwd) + max(t_bwd, comm_s) + codec_s


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
                   target: float | None = None, baseline: str = "bf16") -> pd.DataFrame:
    """One row per method: final/time-to-target metric, bits per step, overhead, estimated time.

    `target` defaults to 95% of the baseline's final accuracy (or 105% of its final loss for a
    lower-is-better metric). Bits are payload per worker per step, averaged over steps;
    compress / decompress seconds are medians over steps.
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
        compress_s, decompress_s = float(h["compress_s"].median()), float(h["decompress_s"].median())
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


@dataclass
class Comparison:
    """Result of `compare`: the per-method summary, the stacked histories and the network model."""

    summary: pd.DataFrame
    history: pd.DataFrame
    network: Network
    compute_s: float

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write compare.parquet, compare.csv, compare_history.parquet and network.json into `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"summary": out / "compare.parquet", "csv": out / "compare.csv",
                 "history": out / "compare_history.parquet", "network": out / "network.json"}
        self.summary.to_parquet(paths["summary"], index=False)
        self.summary.to_csv(paths["csv"], index=False)
        self.history.to_parquet(paths["history"], index=False)
        meta = {**asdict(self.network), "model": self.network.describe(), "compute_s": self.compute_s}
        paths["network"].write_text(json.dumps(meta, indent=1))
        return paths


def compare(workload: str, methods: Iterable[str], workers: int = 8, steps: int = 200,
            backend: str = "sim", net: Network | None = None, topology: str | None = "ring",
            seed: int = 0, target: float | None = None, eval_every: int | None = None,
            options: dict[str, dict] | None = None, lrs: dict[str, float] | None = None,
            device: str = "cpu", baseline: str = "bf16",
            progress: Callable[[str], None] | None = None) -> Comparison:
    """Train each method on `workload` and summarize it under the network model.

    Gossip methods (pattern "p2p") run on `topology`; every other method ignores it.
    `options[method]` and `lrs[method]` override a method's options and learning rate.
    The `baseline` (bf16 or fp16 all-reduce, never fp32) is trained first when `methods` lacks it:
    the target metric, the bit ratios and the speedups are relative to it.
    """
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
    _check_workers(workers)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    net = net or Network()
    options, lrs = options or {}, lrs or {}
    unknown = (set(options) | set(lrs)) - set(methods)
    if unknown:
        raise ValueError(f"options/lrs given for methods not compared: {sorted(unknown)}")
    wl = make_workload(workload, seed=seed, device=device)
    runs = []
    for m in methods:
        if progress:
            progress(m)
        p2p = method_class(m).needs_topology
        res = train(workload, m, workers, steps, backend=backend, topology=topology if p2p else None,
                    seed=seed, lr=lrs.get(m), options=options.get(m), eval_every=eval_every,
                    device=device)
        degree = _degree(topology, workers) if res.pattern == "p2p" else None
        runs.append(MethodRun(m, res.history, res.pattern, res.allreduce_compatible, workers, degree,
                              metric_name=res.metric_name, higher_is_better=wl.higher_is_better,
                              extra={"lr": res.lr, "seconds": res.seconds}))
    compute_s = measure_compute_s(wl)
    summary = summarize_runs(runs, net, compute_s, target=target, baseline=baseline)
    summary.insert(0, "workload", workload)
    summary["optimizer"] = [optimizer_of(r.method, options.get(r.method)) for r in runs]
    summary["lr"] = [r.extra["lr"] for r in runs]
    summary["baseline"] = baseline
    # the resolution of steps_to_target: the first evaluated step of each run
    summary["eval_every"] = [int(r.history.dropna(subset=["metric"])["step"].iloc[0]) for r in runs]
    summary["backend"] = backend
    return Comparison(summary, history_frame(runs, summary), net, compute_s)


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


# --------------------------------------------------------------------------------------------
# Rate-distortion on captured gradients

# (label, compressor name, options): each operator of coders.compressors at typical settings
RD_COMPRESSORS: tuple[tuple[str, str, dict], ...] = (
    ("bf16", "bf16", {}),
    ("top-k 1%", "topk", {"ratio": 0.01}),
    ("top-k 10%", "topk", {"ratio": 0.1}),
    ("rand-k 10%", "randk", {"ratio": 0.1}),
    ("QSGD s=4", "qsgd", {"levels": 4}),
    ("QSGD s=16", "qsgd", {"levels": 16}),
    ("scaled sign", "scaled_sign", {}),  # plain sign(x) has no scale to reconstruct x with
    ("PowerSGD rank 1", "lowrank", {"rank": 1}),
    ("PowerSGD rank 4", "lowrank", {"rank": 4}),
)
# step = c * RMS(x): from coarse (about 1 bit) to fine (about 8 bits per entry)
RD_STEP_MULTS: tuple[float, ...] = (2.0, 1.0, 0.5, 0.25, 0.1, 0.03)
# zi-gennorm: real layers hold exact zeros (dead ReLUs, zero pixels) that a continuous GenNorm wastes bits on
RD_MODELS: tuple[str, ...] = ("zi-gennorm", "gennorm", "laplace", "normal")


def _rel_error(x, xhat) -> tuple[float, float]:
    """(||x - x_hat||^2, ||x||^2) in float64."""
    import torch

    x = torch.as_tensor(x).double().reshape(-1)
    xhat = torch.as_tensor(xhat).to(x.device).double().reshape(-1)
    return float(((x - xhat) ** 2).sum()), float((x**2).sum())


def rate_distortion(tensors: dict, compressors=RD_COMPRESSORS, step_mults=RD_STEP_MULTS,
                    models=RD_MODELS, coder: str = "ans") -> pd.DataFrame:
    """Bits per entry and relative error of each compressor and quantizer + codebook on the same tensors.

    `tensors` maps a layer name to its gradient (full shape, so low-rank operators see the
    matrix). Compressor rows: `Payload.bits` (exact wire bits) per entry, error of
    decompress(compress(x)). Quantizer rows: a uniform quantizer with step c * RMS(x) coded by
    `coder` under each probability model (`coders.bits_per_entry`, side information included).
    One row per (layer, name, param) with `bits`, `n`, `sq_err`, `sq_norm`, `bits_per_entry`,
    `rel_error` = ||x - x_hat|| / ||x||; `aggregate_rd` pools the layers.
    """
    import torch

    from coders.compressors import make_compressor
    from coders.quantizers import UniformQuantizer
    from coders.report import bits_per_entry

    if not tensors:
        raise ValueError("rate_distortion needs at least one tensor")
    rows = []
    for layer, x in tensors.items():
        t = torch.as_tensor(x).float()
        n = t.numel()
        if n == 0 or float((t.double() ** 2).sum()) == 0.0:
            continue  # an all-zero gradient has no relative error to speak of
        for label, name, opts in compressors:
            c = make_compressor(name, **opts)
            payload = c.compress(t, {})
            err, norm = _rel_error(t, c.decompress(payload))
            rows.append({"layer": layer, "kind": "compressor", "name": label, "param": np.nan,
                         "n": n, "bits": float(payload.bits), "sq_err": err, "sq_norm": norm})
        a = t.reshape(-1).cpu().numpy()
        for mult in step_mults:
            q = UniformQuantizer(scale_mult=mult)
            err, norm = _rel_error(a, q.dequantize(q.quantize(a)))
            bpe = bits_per_entry(a, quantizer=q, models=list(models), coders=[coder])
            col = "total_bits_per_entry" if "total_bits_per_entry" in bpe.columns else "bits_per_entry"
            for _, r in bpe.iterrows():
                rows.append({"layer": layer, "kind": "quantizer", "name": f"uniform + {r['model']}/{coder}",
                             "param": mult, "n": n, "bits": float(r[col]) * n, "sq_err": err,
                             "sq_norm": norm})
    df = pd.DataFrame(rows)
    if df.empty:
        raise ValueError("rate_distortion: every tensor was empty or all zero")
    df["bits_per_entry"] = df["bits"] / df["n"]
    df["rel_error"] = np.sqrt(df["sq_err"] / df["sq_norm"])
    return df


def aggregate_rd(rd: pd.DataFrame) -> pd.DataFrame:
    """Pool per-layer rate-distortion rows over layers.

    bits per entry = total bits / total entries; relative error = sqrt(sum err^2 / sum ||x||^2).
    """
    keys = ["kind", "name", "param"]
    cols = ["bits", "n", "sq_err", "sq_norm"]
    missing = [c for c in (*keys, *cols) if c not in rd.columns]
    if missing:
        raise ValueError(f"aggregate_rd: rate-distortion frame lacks columns {missing}")
    g = rd.assign(param=rd["param"].fillna(-1.0)).groupby(keys, sort=False)[cols]
    out = g.sum().reset_index()
    out["param"] = out["param"].where(out["param"] >= 0, np.nan)
    out["layer"] = "all"
    out["bits_per_entry"] = out["bits"] / out["n"]
    out["rel_error"] = np.sqrt(out["sq_err"] / out["sq_norm"])
    return out
