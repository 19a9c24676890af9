"""Several gossip training runs in one launch of the worker processes (for comparisons and tests).

`coders.runtime.train.train` runs one method per launch; under gloo / NCCL each launch spawns
W processes, which dominates short runs. `run_gossip_many(specs, backend)` runs a list of
`TrainSpec`s (same number of workers) one after the other inside a single launch, with the
same per-worker loop (`train_worker`), and returns one `TrainResult` per spec, identical to
what `train` gives for that spec. With `backend="sim"` it simply calls `train` per spec.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import pandas as pd

from coders.runtime.comm import Comm, run_processes
from coders.runtime.train import TrainResult, TrainSpec, train, train_worker

__all__ = ["run_gossip_many"]


def _train_many(comm: Comm, specs: list[TrainSpec]) -> list[dict[str, Any]]:
    return [train_worker(comm, spec) for spec in specs]


def run_gossip_many(specs: list[TrainSpec], backend: str = "sim") -> list[TrainResult]:
    """Train every spec; under "gloo" / "nccl" all of them in one launch of `specs[0].workers` processes."""
    if not specs:
        return []
    if len({s.workers for s in specs}) != 1:
        raise ValueError("run_gossip_many: all specs must have the same number of workers")
    if backend == "sim":
        return [train(backend="sim", **asdict(s)) for s in specs]
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'sim', 'gloo' or 'nccl', got {backend!r}")
    tic = time.perf_counter()
    out = run_processes(specs[0].workers, _train_many, specs, backend=backend)
    seconds = (time.perf_counter() - tic) / len(specs)
    results = []
    for i, spec in enumerate(specs):
        first = out[0][i]
        results.append(TrainResult(
            spec=spec, history=pd.DataFrame(first["rows"]), final_params=[o[i]["params"] for o in out],
            eval_params=first["eval_params"], metric_name=first["metric_name"], lr=first["lr"],
            allreduce_compatible=first["allreduce_compatible"], pattern=first["pattern"], seconds=seconds,
        ))
    return results
