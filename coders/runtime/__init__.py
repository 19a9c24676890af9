"""Runtimes: the one-process simulator and torch.distributed, behind one Comm interface.

`coders.runtime.train`: `train(...) -> TrainResult` and `train_many(specs, backend)`; import
them as `from coders.runtime.train import train`. `coders.runtime.ddp_hooks`: DDP communication
hooks. The communication itself (`Comm`, `ThreadComm` / `run_threads`, `DistComm` /
`run_processes`, topologies) lives below the algorithms in `coders.communication`;
`coders.runtime.comm` and `coders.runtime.topology` re-export it for existing imports.

`train` is not re-exported from this package: the package attribute `coders.runtime.train`
is the submodule (the import system binds it there when the submodule loads), so a function
of the same name would either be shadowed by it or shadow it and break module-path uses such
as `import coders.runtime.train as m` and `mock.patch("coders.runtime.train.train_worker")`.
"""

from coders.communication.comm import Comm, DistComm, ThreadComm, run_processes, run_threads

__all__ = ["Comm", "ThreadComm", "DistComm", "run_threads", "run_processes"]
