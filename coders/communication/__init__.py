"""Communication below the algorithms: the `Comm` protocol and its runtimes, topologies, tensor packing.

`coders.communication.comm`: `Comm` (one worker's view: all_reduce, all_gather, broadcast,
exchange, barrier), `ThreadComm` / `run_threads` (the simulator), `DistComm` / `run_processes`
(torch.distributed). `coders.communication.topology`: gossip graphs and their weights.
`coders.communication.packing`: flatten / unflatten and byte packing of tensor lists.
Algorithms (`coders.algorithms`) are written against these; the runtimes (`coders.runtime`)
drive the algorithms. Nothing here imports either of them.
"""

from coders.communication.comm import Comm, DistComm, ThreadComm, run_processes, run_threads
from coders.communication.packing import flatten, pack_bytes, unflatten, unpack_bytes
from coders.communication.topology import Topology, make_topology

__all__ = ["Comm", "ThreadComm", "DistComm", "run_threads", "run_processes", "Topology", "make_topology",
           "flatten", "unflatten", "pack_bytes", "unpack_bytes"]
