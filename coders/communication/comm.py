"""Communication for one worker: the `Comm` protocol, a thread simulator and torch.distributed.

Every algorithm is written once against `Comm` (one worker's view) and runs unchanged in
two runtimes:

* `ThreadComm`: W workers are W Python threads of one process. Collectives meet at a
  `threading.Barrier`; `all_reduce` sums in rank order, so the result is deterministic and
  bit-identical on every rank. `run_threads(W, fn, *args)` starts the W workers.
* `DistComm`: `torch.distributed` (gloo on CPU, NCCL on GPU). `all_gather` pads tensors of
  unequal sizes; `exchange` posts every isend/irecv before waiting on any, which cannot
  deadlock. `run_processes(W, fn, *args)` spawns W processes on one machine;
  `DistComm.from_env()` joins a group started by `torchrun` (RANK, WORLD_SIZE, MASTER_ADDR).

Semantics shared by both (what code written for the simulator may rely on under gloo/NCCL):

* every collective returns NEW tensors on the caller's device; inputs are never modified;
* `all_reduce` is a sum (divide by `world_size` yourself for a mean);
* `all_gather` accepts any per-rank shape (same dtype on all ranks) and returns the list in
  rank order;
* `broadcast` needs a tensor of the right shape and dtype on every rank (its values are
  ignored off `src`), as in `torch.distributed.broadcast`;
* `exchange(sends)` is a symmetric point-to-point exchange: a worker receives from exactly
  the peers it sends to, and the tensor it receives from a peer has the shape and dtype of
  the tensor it sends to that peer (true for gossip on a symmetric topology). The simulator
  checks this and raises ValueError, so a mistake shows up before a distributed run.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import traceback
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "Comm",
    "ThreadComm",
    "ThreadGroup",
    "DistComm",
    "run_threads",
    "run_processes",
    "free_port",
]


@runtime_checkable
class Comm(Protocol):
    """One worker's handle on the collective operations (see module docstring for semantics)."""

    rank: int
    world_size: int

    def all_reduce(self, t: Tensor) -> Tensor: ...

    def all_gather(self, t: Tensor) -> list[Tensor]: ...

    def broadcast(self, t: Tensor, src: int = 0) -> Tensor: ...

    def exchange(self, sends: dict[int, Tensor]) -> dict[int, Tensor]: ...

    def barrier(self) -> None: ...


def _check_peers(sends: dict[int, Tensor], rank: int, world_size: int) -> None:
    for peer in sends:
        if not isinstance(peer, int) or not 0 <= peer < world_size:
            raise ValueError(f"exchange: peer {peer!r} is not a rank in [0, {world_size})")
        if peer == rank:
            raise ValueError(f"exchange: rank {rank} cannot send to itself")


# ----------------------------------------------------------------------------------------------
# Simulator: W threads, one process
# ----------------------------------------------------------------------------------------------


class ThreadGroup:
    """The state the W `ThreadComm` handles of one simulated job share: a barrier and mailboxes."""

    def __init__(self, world_size: int, timeout: float | None = 600.0):
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        self.world_size = world_size
        self.barrier = threading.Barrier(world_size, timeout=timeout)
        self.slots: list[Any] = [None] * world_size
        self.mail: dict[tuple[int, int], Tensor] = {}

    def comms(self) -> list[ThreadComm]:
        """One handle per rank."""
        return [ThreadComm(r, self) for r in range(self.world_size)]


class ThreadComm:
    """Collectives among W threads of one process (the simulator).

    A collective is: deposit in a slot, barrier, read every slot, barrier (so no rank
    overwrites a slot before all have read it). The sum is taken in rank order by every
    rank, hence identical everywhere and independent of thread scheduling.
    """

    def __init__(self, rank: int, group: ThreadGroup):
        if not 0 <= rank < group.world_size:
            raise ValueError(f"rank {rank} outside [0, {group.world_size})")
        self.rank = rank
        self.world_size = group.world_size
        self.group = group

    def _wait(self) -> None:
        self.group.barrier.wait()

    def _deposit_and_read(self, value: Any) -> list[Any]:
        g = self.group
        g.slots[self.rank] = value
        self._wait()
        seen = list(g.slots)
        return seen

    def all_reduce(self, t: Tensor) -> Tensor:
        """Sum over ranks, accumulated in rank order (deterministic)."""
        seen = self._deposit_and_read(t)
        if any(s.shape != seen[0].shape or s.dtype != seen[0].dtype for s in seen):
            self._wait()
            raise ValueError(
                "all_reduce: ranks passed different shapes/dtypes: "
                + ", ".join(f"{tuple(s.shape)} {s.dtype}" for s in seen)
            )
        out = seen[0].to(device=t.device, copy=True)
        for s in seen[1:]:
            out += s.to(t.device)
        self._wait()
        return out

    def all_gather(self, t: Tensor) -> list[Tensor]:
        """Every rank's tensor, in rank order (sizes may differ)."""
        seen = self._deposit_and_read(t)
        out = [s.to(device=t.device, copy=True) for s in seen]
        self._wait()
        return out

    def broadcast(self, t: Tensor, src: int = 0) -> Tensor:
        """The tensor of rank `src`, copied to every rank."""
        if not 0 <= src < self.world_size:
            raise ValueError(f"broadcast: src {src} outside [0, {self.world_size})")
        seen = self._deposit_and_read(t)
        out = seen[src].to(device=t.device, copy=True)
        self._wait()
        if out.shape != t.shape or out.dtype != t.dtype:
            raise ValueError(
                f"broadcast: rank {self.rank} passed {tuple(t.shape)} {t.dtype}, src sent "
                f"{tuple(out.shape)} {out.dtype}"
            )
        return out

    def exchange(self, sends: dict[int, Tensor]) -> dict[int, Tensor]:
        """Symmetric point-to-point exchange: send `sends[peer]` to each peer, receive one back."""
        _check_peers(sends, self.rank, self.world_size)
        g = self.group
        for peer, t in sends.items():
            g.mail[(self.rank, peer)] = t
        self._wait()
        out: dict[int, Tensor] = {}
        err = None
        for peer, t in sends.items():
            got = g.mail.get((peer, self.rank))
            if got is None:
                err = f"exchange: rank {self.rank} sent to {peer} but {peer} sent nothing back"
                break
            if got.shape != t.shape or got.dtype != t.dtype:
                err = (
                    f"exchange: rank {self.rank} sent {tuple(t.shape)} {t.dtype} to {peer} but "
                    f"received {tuple(got.shape)} {got.dtype} (exchange must be symmetric)"
                )
                break
            out[peer] = got.to(device=t.device, copy=True)
        self._wait()
        # Each rank removes what it sent; after the barrier nobody reads these any more.
        for peer in sends:
            g.mail.pop((self.rank, peer), None)
        self._wait()
        if err is not None:
            raise ValueError(err)
        return out

    def barrier(self) -> None:
        self._wait()


def run_threads(world_size: int, fn: Callable[..., Any], *args: Any, timeout: float | None = 600.0,
                intra_op_threads: int | None = None) -> list:
    """Run `fn(comm, *args)` on `world_size` threads sharing one `ThreadGroup`; return results by rank.

    If a worker raises, the barrier is aborted so the others stop at their next collective,
    and the first exception (by rank) is re-raised here.
    The W worker threads already share the cores, so torch's intra-op pool is set to
    `intra_op_threads` (default max(1, cores // W)) for the run and restored afterwards:
    W threads each splitting small ops over all cores oversubscribe them (on 2 cores, 4 workers
    made QSGD / bit packing ~10x slower). The setting is process-wide while the run lasts.
    """
    if intra_op_threads is not None and intra_op_threads < 1:
        raise ValueError(f"run_threads: intra_op_threads must be >= 1, got {intra_op_threads}")
    if intra_op_threads is None:
        intra_op_threads = max(1, (os.cpu_count() or 1) // max(world_size, 1))
    previous = torch.get_num_threads()
    torch.set_num_threads(min(intra_op_threads, previous))
    try:
        return _run_threads(world_size, fn, args, timeout)
    finally:
        torch.set_num_threads(previous)


def _run_threads(world_size: int, fn: Callable[..., Any], args: tuple, timeout: float | None) -> list:
    group = ThreadGroup(world_size, timeout=timeout)
    results: list[Any] = [None] * world_size
    errors: list[BaseException | None] = [None] * world_size

    def target(comm: ThreadComm) -> None:
        try:
            results[comm.rank] = fn(comm, *args)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            errors[comm.rank] = e
            group.barrier.abort()

    threads = [threading.Thread(target=target, args=(c,), name=f"worker-{c.rank}") for c in group.comms()]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # Prefer the root cause over the BrokenBarrierError the other ranks saw.
    real = [e for e in errors if e is not None and not isinstance(e, threading.BrokenBarrierError)]
    if real:
        raise real[0]
    broken = [e for e in errors if e is not None]
    if broken:
        raise broken[0]
    return results


# ----------------------------------------------------------------------------------------------
# torch.distributed
# ----------------------------------------------------------------------------------------------

_MAX_NDIM = 8


class DistComm:
    """`Comm` over an initialized `torch.distributed` process group (gloo or NCCL).

    Tensors travel on the backend's device (CUDA for NCCL, CPU for gloo) and come back on
    the caller's device. Booleans travel as uint8.
    """

    def __init__(self, group: Any = None):
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise ValueError("DistComm: torch.distributed is not initialized (call init_process_group)")
        self.dist = dist
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.backend = dist.get_backend(group)
        if self.backend == "nccl":
            self.device = torch.device("cuda", torch.cuda.current_device())
        else:
            self.device = torch.device("cpu")

    @classmethod
    def from_env(cls, backend: str | None = None) -> DistComm:
        """Join the group described by RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT (torchrun)."""
        import torch.distributed as dist

        if not dist.is_initialized():
            for key in ("RANK", "WORLD_SIZE"):
                if key not in os.environ:
                    raise ValueError(f"DistComm.from_env: environment variable {key} is not set")
            if backend is None:
                backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))
            dist.init_process_group(backend)
        return cls()

    def _out(self, t: Tensor) -> Tensor:
        wire = t.to(self.device, copy=True)
        return wire.to(torch.uint8) if wire.dtype == torch.bool else wire

    @staticmethod
    def _back(wire: Tensor, like: Tensor) -> Tensor:
        return wire.to(device=like.device, dtype=like.dtype)

    def all_reduce(self, t: Tensor) -> Tensor:
        if t.dtype == torch.bool:
            raise ValueError("all_reduce: boolean tensors cannot be summed; convert to an integer dtype")
        wire = self._out(t)
        self.dist.all_reduce(wire, group=self.group)
        return self._back(wire, t)

    def all_gather(self, t: Tensor) -> list[Tensor]:
        if t.dim() > _MAX_NDIM:
            raise ValueError(f"all_gather: at most {_MAX_NDIM} dimensions, got {t.dim()}")
        meta = torch.zeros(_MAX_NDIM + 1, dtype=torch.int64, device=self.device)
        meta[0] = t.dim()
        if t.dim():
            meta[1 : t.dim() + 1] = torch.tensor(t.shape, dtype=torch.int64)
        metas = [torch.empty_like(meta) for _ in range(self.world_size)]
        self.dist.all_gather(metas, meta, group=self.group)
        shapes = [tuple(int(v) for v in m[1 : int(m[0]) + 1].tolist()) for m in metas]
        sizes = [int(torch.Size(s).numel()) for s in shapes]
        width = max(max(sizes), 1)
        flat = self._out(t).reshape(-1)
        padded = torch.zeros(width, dtype=flat.dtype, device=self.device)
        padded[: flat.numel()] = flat
        bufs = [torch.empty_like(padded) for _ in range(self.world_size)]
        self.dist.all_gather(bufs, padded, group=self.group)
        return [self._back(b[:n].reshape(s), t) for b, n, s in zip(bufs, sizes, shapes, strict=True)]

    def broadcast(self, t: Tensor, src: int = 0) -> Tensor:
        if not 0 <= src < self.world_size:
            raise ValueError(f"broadcast: src {src} outside [0, {self.world_size})")
        wire = self._out(t)
        self.dist.broadcast(wire, src=src, group=self.group)
        return self._back(wire, t)

    def exchange(self, sends: dict[int, Tensor]) -> dict[int, Tensor]:
        _check_peers(sends, self.rank, self.world_size)
        peers = sorted(sends)
        outs = {p: self._out(sends[p]).contiguous() for p in peers}
        recvs = {p: torch.empty_like(outs[p]) for p in peers}
        # All sends and receives are posted before any wait: no ordering can deadlock.
        ops = []
        for p in peers:
            ops.append(self.dist.P2POp(self.dist.isend, outs[p], p, self.group))
            ops.append(self.dist.P2POp(self.dist.irecv, recvs[p], p, self.group))
        if ops:
            for req in self.dist.batch_isend_irecv(ops):
                req.wait()
        return {p: self._back(recvs[p], sends[p]) for p in peers}

    def barrier(self) -> None:
        self.dist.barrier(group=self.group)


# ----------------------------------------------------------------------------------------------
# Launching W processes on one machine
# ----------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on localhost that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _process_entry(rank: int, world_size: int, backend: str, init_file: str, out_dir: str,
                   fn: Callable[..., Any], args: tuple) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    result_path = os.path.join(out_dir, f"rank{rank}.pt")
    try:
        if backend == "nccl":
            torch.cuda.set_device(rank % torch.cuda.device_count())
        dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank,
                                world_size=world_size)
        try:
            result = fn(DistComm(), *args)
        finally:
            dist.destroy_process_group()
        torch.save({"ok": True, "value": result}, result_path)
    except BaseException:  # noqa: BLE001 - reported to the parent
        torch.save({"ok": False, "error": traceback.format_exc()}, result_path)
        raise SystemExit(1) from None


def run_processes(world_size: int, fn: Callable[..., Any], *args: Any, backend: str = "gloo",
                  timeout: float = 600.0) -> list:
    """Spawn `world_size` processes running `fn(DistComm, *args)`; return results by rank.

    `fn` and `args` must be picklable (a module-level function). Processes rendezvous through
    a FileStore in a temporary directory; results travel back through `torch.save`. A failure
    on any rank raises RuntimeError carrying that rank's traceback.
    """
    import torch.multiprocessing as mp

    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("backend 'nccl' needs CUDA, which is not available")
    with tempfile.TemporaryDirectory(prefix="gradstats-dist-") as tmp:
        init_file = os.path.join(tmp, "store")
        ctx = mp.get_context("spawn")
        procs = [
            ctx.Process(target=_process_entry,
                        args=(r, world_size, backend, init_file, tmp, fn, args), daemon=False)
            for r in range(world_size)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
        results = []
        for r in range(world_size):
            path = os.path.join(tmp, f"rank{r}.pt")
            if not os.path.exists(path):
                raise RuntimeError(f"run_processes: rank {r} produced no result "
                                   f"(exit code {procs[r].exitcode}; timeout {timeout}s?)")
            rec = torch.load(path, weights_only=False)
            if not rec["ok"]:
                raise RuntimeError(f"run_processes: rank {r} failed:\n{rec['error']}")
            results.append(rec["value"])
        return results
