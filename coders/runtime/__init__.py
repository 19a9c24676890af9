"""Runtimes: the one-process simulator and torch.distributed, behind one Comm interface.

`coders.runtime.comm`: `Comm`, `ThreadComm` / `run_threads` (simulator), `DistComm` /
`run_processes` (torch.distributed). `coders.runtime.train`: `train(...) -> TrainResult`
(import it as `from coders.runtime.train import train`; the submodule and the function share
the name). `coders.runtime.ddp_hooks`: DDP communication hooks. `coders.runtime.topology`:
gossip graphs.
"""

from coders.runtime.comm import Comm, DistComm, ThreadComm, run_processes, run_threads

__all__ = ["Comm", "ThreadComm", "DistComm", "run_threads", "run_processes"]
