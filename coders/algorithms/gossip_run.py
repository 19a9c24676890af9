"""Decentralized training runs of the gossip methods with consensus tracking, in either runtime.

`run_gossip(config, backend)` trains `config.workers` replicas of a built-in workload on a
topology, each on its own shard (`split="iid"` or `"label-skew"`), with one of
`GOSSIP_METHODS`, and records per evaluation point: the mean local training loss, the
consensus distance (1/W) sum_i ||x_i - x_bar||^2 (Koloskova et al. 2019), the metric of the
averaged model x_bar and of worker 0, and the cumulative bits sent per worker. The same
`gossip_worker` runs under the thread simulator (`backend="sim"`) and under torch.distributed
(`"gloo"` / `"nccl"`, one process per worker); with the same seed both give the same numbers.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from coders.algorithms.gossip import GOSSIP_METHODS, consensus_distance
from coders.runtime.comm import Comm, run_processes, run_threads
from coders.runtime.topology import Topology, make_topology

__all__ = ["GossipRunConfig", "GossipRun", "gossip_worker", "run_gossip", "run_gossip_many"]


@dataclass
class GossipRunConfig:
    """What to train: workload, method (a `GOSSIP_METHODS` key), topology, schedule and data split."""

    method: str = "powergossip"
    topology: str | Topology = "ring"
    workers: int = 8
    steps: int = 200
    lr: float = 0.05
    workload: str = "digits-cnn"
    batch_size: int | None = None
    split: str = "iid"
    seed: int = 0
    eval_every: int = 25
    options: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.method not in GOSSIP_METHODS:
            raise ValueError(f"unknown gossip method {self.method!r}; choose one of {sorted(GOSSIP_METHODS)}")
        if self.steps < 1 or self.eval_every < 1 or self.workers < 1:
            raise ValueError("steps, eval_every and workers must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    def make_topology(self) -> Topology:
        return make_topology(self.topology, self.workers)


@dataclass
class GossipRun:
    """Result: `history` (one row per evaluation) and each worker's final flat parameters."""

    config: GossipRunConfig
    history: pd.DataFrame
    final_params: list[torch.Tensor]
    seconds: float


def _flat(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def gossip_worker(comm: Comm, config: GossipRunConfig, workload: Any = None,
                  models: list | None = None) -> dict[str, Any]:
    """One worker's training loop (a `run_threads` / `run_processes` target); returns its history and params.

    In the simulator the workload and the replicas are built beforehand in the main thread
    (`workload`, `models`), because building a model reseeds the global RNG, which threads share.
    """
    from captures.workloads import make_workload

    if workload is None:
        workload = make_workload(config.workload, seed=config.seed, device=config.device)
    model = models[comm.rank] if models is not None else workload.make_model()
    params = [p for p in model.parameters() if p.requires_grad]
    topology = config.make_topology()
    algo = GOSSIP_METHODS[config.method](params, comm, topology=topology, seed=config.seed, **config.options)
    batches = workload.batches(comm.rank, comm.world_size, config.batch_size, config.split, config.seed)
    rows, bits, losses = [], 0.0, []
    eval_model = copy.deepcopy(model) if comm.rank == 0 else None

    def evaluate(step: int) -> None:
        dist = consensus_distance(params, comm)
        flat = _flat(params)
        mean = comm.all_reduce(flat) / comm.world_size
        loss = comm.all_reduce(torch.tensor([sum(losses) / max(len(losses), 1)], dtype=torch.float64))
        if comm.rank == 0:
            own = workload.evaluate(model)
            offset = 0
            with torch.no_grad():
                for p in eval_model.parameters():
                    p.copy_(mean[offset : offset + p.numel()].view_as(p))
                    offset += p.numel()
            avg = workload.evaluate(eval_model)
            rows.append({
                "step": step, "method": config.method, "topology": topology.name, "workers": comm.world_size,
                "train_loss": float(loss[0]) / comm.world_size if step else float("nan"),
                "consensus_distance": dist,
                "metric_avg": avg[workload.metric_name], "metric_worker0": own[workload.metric_name],
                "bits_per_worker": bits, "metric": workload.metric_name,
            })
        losses.clear()

    evaluate(0)
    model.train()
    for step in range(1, config.steps + 1):
        for p in params:
            p.grad = None
        loss = workload.loss(model, next(batches))
        loss.backward()
        losses.append(float(loss.detach()))
        stats = algo.step(config.lr)
        bits += stats.bits_up
        if step % config.eval_every == 0 or step == config.steps:
            evaluate(step)
    return {"rows": rows, "params": _flat(params).cpu()}


def run_gossip(config: GossipRunConfig, backend: str = "sim") -> GossipRun:
    """Train with `backend` "sim" (threads), "gloo" or "nccl" (processes); history of rank 0."""
    tic = time.perf_counter()
    if backend == "sim":
        from captures.workloads import make_workload

        workload = make_workload(config.workload, seed=config.seed, device=config.device)
        models = [workload.make_model() for _ in range(config.workers)]
        out = run_threads(config.workers, gossip_worker, config, workload, models)
    elif backend in ("gloo", "nccl"):
        out = run_processes(config.workers, gossip_worker, config, backend=backend)
    else:
        raise ValueError(f"backend must be 'sim', 'gloo' or 'nccl', got {backend!r}")
    return GossipRun(config=config, history=pd.DataFrame(out[0]["rows"]),
                     final_params=[o["params"] for o in out], seconds=time.perf_counter() - tic)


def _gossip_worker_many(comm: Comm, configs: list[GossipRunConfig]) -> list[dict[str, Any]]:
    return [gossip_worker(comm, c) for c in configs]


def run_gossip_many(configs: list[GossipRunConfig], backend: str = "sim") -> list[GossipRun]:
    """Several runs with the same number of workers; under gloo / NCCL in one launch of the processes."""
    if not configs:
        return []
    if len({c.workers for c in configs}) != 1:
        raise ValueError("run_gossip_many: all configs must have the same number of workers")
    if backend == "sim":
        return [run_gossip(c, "sim") for c in configs]
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'sim', 'gloo' or 'nccl', got {backend!r}")
    tic = time.perf_counter()
    out = run_processes(configs[0].workers, _gossip_worker_many, configs, backend=backend)
    seconds = (time.perf_counter() - tic) / len(configs)
    return [
        GossipRun(config=c, history=pd.DataFrame(out[0][i]["rows"]),
                  final_params=[o[i]["params"] for o in out], seconds=seconds)
        for i, c in enumerate(configs)
    ]
