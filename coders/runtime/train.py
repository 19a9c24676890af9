"""Train a workload with a distributed method, in the thread simulator or on torch.distributed.

`train(workload, method, workers, steps, backend="sim"|"gloo"|"nccl", ...) -> TrainResult`.
Every worker runs the same loop (`train_worker`), whatever the runtime:

    for each step: forward/backward on its own shard -> algo.step(lr) -> record
    every `eval_every` steps (and the last): evaluate the model of the method's pattern

The model evaluated is the worker's own (all-reduce / all-gather / PS methods keep replicas
identical), the algorithm's `eval_params()` when it exposes one (MCM's central model), and
for decentralized ("p2p") methods the AVERAGE model x_bar over workers, together with the
consensus distance (1/W) sum_i ||x_i - x_bar||^2 (Koloskova et al. 2019).
Per step the history holds the mean over workers of the loss, bits (up / down / wire, per
worker, and the ideal / entropy-coded sizes `bits_*_ideal`, `bits_*_coded` a method reports),
compress / decompress seconds and step seconds; `metric` at evaluation steps.

`train_many(specs, backend)` runs several `TrainSpec`s (same number of workers) one after the
other inside ONE launch of the W worker processes (spawning dominates short gloo runs); each
result equals what `train` gives for that spec.
`topology` (decentralized methods) is a name (`ring`, `torus`, ...), a `Topology`, an
adjacency / gossip-weight matrix or a networkx graph (`coders.communication.topology.make_topology`).
For p2p methods the history also holds `bits_per_neighbour_mean` (mean over workers of the
bits each worker sends per neighbour in the step).

Deadline and faults (issue 15 item 9): `timeout` (default 600 s) bounds a whole process launch
(every rank, every spec of a `train_many`); past it the run is stopped and `RankTimeoutError`
names the stuck rank; when a rank raises, `RankFailedError` shows that rank's error in one line
and where its full traceback is (`coders.runtime.launch`). In the simulator `timeout` bounds each
wait at a collective. Under torchrun it is the process group's timeout (per collective).
`fault=Fault("raise" | "hang", rank, step)` is the test hook that makes one rank fail or hang.

Capture (issue 12): `capture=DIR` records per worker (capture rank = worker) its gradient, its
update and what its method compresses (compressor inputs; x_i - x_j for gossip methods) every
`capture_every` steps, `capture_sample` entries per layer (`coders.runtime.capture`; read it back
with `coders.runtime.capture.open_method_capture(DIR)`). Recording does not change the training.

Backends: "sim" runs W threads (models are built in the main thread, as building one
reseeds the global RNG); "gloo" / "nccl" spawn W processes on this machine, unless the
process was started by `torchrun` (RANK and WORLD_SIZE set), in which case it joins that group.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd
import torch

from captures.progress import Progress, open_bar
from coders.algorithms.gossip import consensus
from coders.algorithms.registry import check_method_options, make_algorithm, method_class
from coders.communication.comm import Comm, DistComm, run_threads
from coders.communication.packing import flatten, unflatten
from coders.communication.topology import Topology, make_topology
from coders.runtime.launch import DEFAULT_TIMEOUT, RankFailedError, RankTimeoutError, launch

__all__ = ["TrainSpec", "TrainResult", "Fault", "train", "train_many", "train_worker", "HISTORY_COLUMNS",
           "RankFailedError", "RankTimeoutError", "DEFAULT_TIMEOUT"]

HISTORY_COLUMNS = ["step", "loss", "metric", "bits_up", "bits_down", "bits_wire", "compress_s",
                   "decompress_s", "step_s"]
_STAT_KEYS = ["loss", "bits_up", "bits_down", "bits_wire", "compress_s", "decompress_s", "step_s"]
BACKENDS = ("sim", "gloo", "nccl")


@dataclass(frozen=True)
class Fault:
    """Test hook: rank `rank` raises (`action="raise"`) or sleeps `seconds` (`"hang"`) as `step` starts."""

    action: str
    rank: int = 1
    step: int = 1
    seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.action not in ("raise", "hang"):
            raise ValueError(f"Fault action must be 'raise' or 'hang', got {self.action!r}")

    def strike(self, rank: int, step: int) -> None:
        if rank != self.rank or step != self.step:
            return
        if self.action == "raise":
            raise RuntimeError(f"injected fault: rank {rank} raises at step {step}")
        time.sleep(self.seconds)


@dataclass
class TrainSpec:
    """Everything a worker needs to run (picklable, so it can be sent to spawned processes).

    `topology`: a name, a `Topology`, an adjacency or gossip matrix, or a networkx graph.
    """

    workload: str
    method: str
    workers: int
    steps: int
    lr: float | None = None
    seed: int = 0
    topology: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    eval_every: int | None = None
    split: str = "iid"
    batch_size: int | None = None
    device: str = "cpu"
    capture: str | None = None
    capture_every: int = 1
    capture_sample: int | float | None = None
    fault: Fault | None = None


@dataclass
class TrainResult:
    """`history`: one row per step (HISTORY_COLUMNS, + consensus_distance for p2p methods);
    `final_params`: each worker's flat parameters; `eval_params`: the flat evaluated model."""

    spec: TrainSpec
    history: pd.DataFrame
    final_params: list[torch.Tensor]
    eval_params: torch.Tensor
    metric_name: str
    lr: float
    allreduce_compatible: bool
    pattern: str
    seconds: float

    @property
    def final_metric(self) -> float:
        """The metric at the last evaluation."""
        m = self.history["metric"].dropna()
        return float(m.iloc[-1]) if len(m) else math.nan

    def summary(self) -> dict[str, Any]:
        """One row: method, final metric, mean bits per worker per step, overheads."""
        h = self.history
        return {
            "method": self.spec.method, "workload": self.spec.workload, "workers": self.spec.workers,
            "steps": self.spec.steps, "lr": self.lr, self.metric_name: self.final_metric,
            "final_loss": float(h["loss"].iloc[-5:].mean()),
            "bits_up_per_step": float(h["bits_up"].mean()),
            "bits_down_per_step": float(h["bits_down"].mean()),
            "bits_wire_per_step": float(h["bits_wire"].mean()),
            "compress_ms": 1e3 * float(h["compress_s"].mean()),
            "decompress_ms": 1e3 * float(h["decompress_s"].mean()),
            "step_ms": 1e3 * float(h["step_s"].mean()),
            "pattern": self.pattern, "allreduce_compatible": self.allreduce_compatible,
        }


def _flat(params: list[torch.Tensor]) -> torch.Tensor:
    return flatten([p.detach().float() for p in params])


def _default_lr(spec: TrainSpec, workload: Any) -> float:
    if spec.lr is not None:
        return float(spec.lr)
    cls = method_class(spec.method)
    return float(getattr(cls, "default_lr", None) or workload.lr)


def train_worker(comm: Comm, spec: TrainSpec, workload: Any = None, model: Any = None,
                 on_step: Callable[[], None] | None = None) -> dict[str, Any]:
    """One worker's training loop (a `run_threads` / `run_processes` target); `on_step()` after each step."""
    from captures import make_workload

    if workload is None:
        workload = make_workload(spec.workload, seed=spec.seed, device=spec.device)
    if model is None:
        model = workload.make_model()
    lr = _default_lr(spec, workload)
    cls = method_class(spec.method)
    topology = None
    if cls.needs_topology:
        topology = make_topology("ring" if spec.topology is None else spec.topology, comm.world_size)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    algo = make_algorithm(spec.method, params, comm, topology=topology, seed=spec.seed, **spec.options)
    capture = None
    if spec.capture is not None:
        from coders.runtime.capture import MethodCapture

        capture = MethodCapture(spec.capture, [n for n, _ in named], params, rank=comm.rank,
                                world_size=comm.world_size, method=spec.method, every=spec.capture_every,
                                sample=spec.capture_sample, seed=spec.seed, model=spec.workload)
        algo.attach_recorder(capture)
    try:
        out = _train_loop(comm, spec, workload, model, params, algo, lr, capture, on_step)
    except BaseException as e:
        if capture is not None:
            capture.abort(f"{type(e).__name__}: {e}")
        raise
    if capture is not None:
        capture.finish()
    return out


def _train_loop(comm: Comm, spec: TrainSpec, workload: Any, model: Any, params: list, algo: Any, lr: float,
                capture: Any, on_step: Callable[[], None] | None = None) -> dict[str, Any]:
    p2p = algo.pattern == "p2p"
    batches = workload.batches(comm.rank, comm.world_size, spec.batch_size, spec.split, spec.seed)
    eval_every = spec.eval_every or max(1, spec.steps // 10)
    eval_model = copy.deepcopy(model) if comm.rank == 0 else None
    rows: list[dict[str, Any]] = []

    def evaluate(row: dict[str, Any]) -> None:
        chosen = algo.eval_params() if hasattr(algo, "eval_params") else None
        flat = _flat(chosen if chosen is not None else params)
        if p2p:
            flat, row["consensus_distance"] = consensus(flat, comm)
        if comm.rank == 0:
            targets = list(eval_model.parameters())
            with torch.no_grad():
                for p, v in zip(targets, unflatten(flat, targets), strict=True):
                    p.copy_(v)
            row["metric"] = workload.evaluate(eval_model)[workload.metric_name]
        return flat

    model.train()
    evaluated = None
    note_step = getattr(comm, "note_step", None)  # the launcher's watch: which step a stuck rank is in
    for step in range(1, spec.steps + 1):
        if note_step is not None:
            note_step(step)
        if spec.fault is not None:
            spec.fault.strike(comm.rank, step)
        t0 = time.perf_counter()
        for p in params:
            p.grad = None
        loss = workload.loss(model, next(batches))
        loss.backward()
        before, capture_s = None, 0.0
        if capture is not None:  # its copies are not the method's time
            tic = time.perf_counter()
            capture.begin_step(step)
            capture.record_grads(algo.grads())
            before = capture.snapshot()
            capture_s = time.perf_counter() - tic
        stats = algo.step(lr)
        if spec.device.startswith("cuda"):
            torch.cuda.synchronize()
        step_s = time.perf_counter() - t0 - capture_s
        if capture is not None:  # after the clock: writing the records is not the method's time
            capture.record_update(before)
            capture.end_step()
        values = [float(loss.detach()), stats.bits_up, stats.bits_down, stats.bits_wire,
                  stats.compress_s, stats.decompress_s, step_s]
        if p2p:  # same layout on every rank: all of them run a p2p method
            values.append(float(stats.extra.get("bits_per_neighbour_mean", math.nan)))
        # ideal / entropy-coded sizes differ per worker (e.g. coded QSGD levels): averaged like bits_up;
        # every rank runs the same method, so every rank has the same keys
        size_keys = sorted(k for k in stats.extra if k.endswith(("_ideal", "_coded")))
        values.extend(float(stats.extra[k]) for k in size_keys)
        local = torch.tensor(values, dtype=torch.float64)
        mean = (comm.all_reduce(local.to(spec.device)).cpu() / comm.world_size).tolist()
        row = {"step": step, **dict(zip(_STAT_KEYS, mean[: len(_STAT_KEYS)], strict=True)),
               "metric": math.nan}
        if p2p:
            row["bits_per_neighbour_mean"] = mean[len(_STAT_KEYS)]
        row.update(zip(size_keys, mean[len(mean) - len(size_keys):], strict=True))
        if step % eval_every == 0 or step == spec.steps:
            evaluated = evaluate(row)
        rows.append(row)
        if on_step is not None:
            on_step()
    return {
        "rows": rows if comm.rank == 0 else [],
        "params": _flat(params).cpu(),
        "eval_params": evaluated.cpu() if evaluated is not None else _flat(params).cpu(),
        "lr": lr, "metric_name": workload.metric_name,
        "allreduce_compatible": algo.allreduce_compatible,
        "pattern": algo.pattern,
    }


def _under_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _check_spec(spec: TrainSpec, backend: str) -> None:
    """Clear errors for a bad spec, before any worker starts."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if spec.workers < 1 or spec.steps < 1:
        raise ValueError(f"workers and steps must be >= 1, got workers={spec.workers}, steps={spec.steps}")
    if spec.eval_every is not None and spec.eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {spec.eval_every}")
    if spec.lr is not None and not (math.isfinite(spec.lr) and spec.lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {spec.lr}")
    cls = method_class(spec.method)  # raises on an unknown name
    if spec.topology is not None:
        if not cls.needs_topology:
            raise ValueError(f"method {spec.method!r} is centralized; a topology does not apply")
        make_topology(spec.topology, spec.workers)  # unknown name / wrong size / disconnected graph
    if spec.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {spec.device!r} needs CUDA, which is not available")
    if int(spec.capture_every) != spec.capture_every or spec.capture_every < 1:
        raise ValueError(f"capture_every must be a positive integer, got {spec.capture_every}")
    if spec.capture_sample is not None:
        from captures.recorder import sample_size

        sample_size(1, spec.capture_sample)  # raises on a bad count / fraction
    if spec.fault is not None and not 0 <= spec.fault.rank < spec.workers:
        raise ValueError(f"fault rank {spec.fault.rank} is not a rank of {spec.workers} workers")


def _train_specs(comm: Comm, specs: list[TrainSpec],
                 on_step: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """One worker's part of several runs, one after the other (a `run_processes` target)."""
    return [train_worker(comm, spec, on_step=on_step) for spec in specs]


def _train_sim_worker(comm: Comm, spec: TrainSpec, workload: Any, models: list,
                      on_step: Callable[[], None] | None = None) -> dict[str, Any]:
    # the bar follows rank 0's thread only: one update per step, from one thread
    return train_worker(comm, spec, workload, models[comm.rank], on_step if comm.rank == 0 else None)


def _result(spec: TrainSpec, per_rank: list[dict[str, Any]], seconds: float) -> TrainResult:
    first = per_rank[0]
    return TrainResult(
        spec=spec, history=pd.DataFrame(first["rows"]), final_params=[o["params"] for o in per_rank],
        eval_params=first["eval_params"], metric_name=first["metric_name"], lr=first["lr"],
        allreduce_compatible=first["allreduce_compatible"], pattern=first["pattern"], seconds=seconds,
    )


def train_many(specs: list[TrainSpec], backend: str = "sim",
               timeout: float = DEFAULT_TIMEOUT, progress: Progress = False) -> list[TrainResult]:
    """Train every spec; under "gloo" / "nccl" all of them in one launch of `specs[0].workers` processes.

    `progress` (`captures.progress`): one bar over the steps of all specs, counting rank 0's
    steps (in the simulator from rank 0's thread, under a launch from the launcher's poll of
    rank 0, under torchrun on rank 0 only).
    `timeout`: seconds for the whole launch (see module docstring). The specs must share the
    number of workers; specs with `capture` need distinct directories. Each result is what
    `train` gives for that spec; `seconds` is the launch's wall time divided by the number of
    specs for a process launch (the runs share it), the run's own time in the simulator.
    """
    if not specs:
        return []
    if len({s.workers for s in specs}) != 1:
        raise ValueError("train_many: all specs must have the same number of workers")
    if not (timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
    for spec in specs:
        _check_spec(spec, backend)
        check_method_options(spec.method, spec.options)  # a typo fails here, not inside every worker
    dirs = [os.path.abspath(s.capture) for s in specs if s.capture is not None]
    if len(set(dirs)) != len(dirs):
        raise ValueError(f"train_many: two specs capture into the same directory: {sorted(dirs)}")
    methods = list(dict.fromkeys(s.method for s in specs))
    bar = open_bar(progress, total=sum(s.steps for s in specs), unit="step",
                   desc=f"train {methods[0]}" if len(methods) == 1 else "train")
    try:
        return _train_many(specs, backend, timeout, bar)
    finally:
        bar.close()


def _train_many(specs: list[TrainSpec], backend: str, timeout: float, bar: Any) -> list[TrainResult]:
    if backend == "sim":
        from captures import make_workload

        results = []
        for spec in specs:
            tic = time.perf_counter()
            if len(specs) > 1:
                bar.set_postfix_str(spec.method)
            wl = make_workload(spec.workload, seed=spec.seed, device=spec.device)
            models = [wl.make_model() for _ in range(spec.workers)]
            out = run_threads(spec.workers, _train_sim_worker, spec, wl, models, bar.update, timeout=timeout)
            results.append(_result(spec, out, time.perf_counter() - tic))
        return results
    tic = time.perf_counter()
    if _under_torchrun():
        import datetime

        import torch.distributed as dist

        if not dist.is_initialized():  # torchrun's processes cannot be stopped from here: bound each wait
            if backend == "nccl":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
        comm = DistComm.from_env(backend)
        if comm.world_size != specs[0].workers:
            raise ValueError(f"torchrun started {comm.world_size} processes but workers={specs[0].workers}")
        out = [_train_specs(comm, specs, bar.update if comm.rank == 0 else None)]  # this rank only
    else:
        shown = [0]

        def on_steps(n: int) -> None:  # rank 0's steps in all, read from the launcher's board
            if n > shown[0]:
                bar.update(n - shown[0])
                shown[0] = n

        out = launch(specs[0].workers, _train_specs, specs, backend=backend, timeout=timeout,
                     on_steps=on_steps)
    seconds = (time.perf_counter() - tic) / len(specs)
    return [_result(spec, [o[i] for o in out], seconds) for i, spec in enumerate(specs)]


def train(workload: str, method: str, workers: int, steps: int, backend: str = "sim",
          topology: Any = None, seed: int = 0, lr: float | None = None,
          options: dict[str, Any] | None = None, eval_every: int | None = None, split: str = "iid",
          batch_size: int | None = None, device: str | None = None, timeout: float = DEFAULT_TIMEOUT,
          capture: str | os.PathLike | None = None, capture_every: int = 1,
          capture_sample: int | float | None = None, fault: Fault | None = None,
          progress: Progress = False) -> TrainResult:
    """Train `workload` with `method` on `workers` workers for `steps` steps; see module docstring.

    `topology` (decentralized methods only): a name, a `Topology`, an adjacency or gossip
    matrix, or a networkx graph. `timeout`: seconds for the whole run (600). `capture`: a
    directory for what each worker compresses, every `capture_every` steps, `capture_sample`
    entries per layer (None: full tensors). `fault`: test hook (`Fault`). `progress`: a bar over
    rank 0's steps (`captures.progress`; default none).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if device is None:
        device = "cuda" if backend == "nccl" else "cpu"
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("backend 'nccl' needs CUDA, which is not available")
    spec = TrainSpec(workload, method, workers, steps, lr, seed, topology, dict(options or {}), eval_every,
                     split, batch_size, device, None if capture is None else os.fspath(capture),
                     capture_every, capture_sample, fault)
    return train_many([spec], backend, timeout=timeout, progress=progress)[0]


def spec_dict(result: TrainResult) -> dict[str, Any]:
    """The run's settings as a plain dict (for saving next to the history).

    A topology given as an object is saved by name (`Topology.name`, or "custom" for a matrix/graph).
    """
    out = {f.name: copy.deepcopy(getattr(result.spec, f.name)) for f in fields(result.spec)}
    topo = out["topology"]
    if topo is not None and not isinstance(topo, str):
        out["topology"] = topo.name if isinstance(topo, Topology) else "custom"
    return out
