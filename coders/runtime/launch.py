"""Launch W worker processes on one machine under ONE overall deadline, and say which rank failed and why.

`launch(world_size, fn, *args, backend="gloo", timeout=600.0) -> list` runs `fn(comm, *args)` in
W spawned processes (a `torch.distributed` group over a FileStore) and returns the results by rank.
What it guarantees (issue 15 item 9):

* one deadline for the whole launch: after `timeout` seconds from the start every rank still
  running is stopped and `RankTimeoutError` names the stuck rank(s) (not world_size x timeout,
  and not rank 0 by default);
* when a rank raises, `RankFailedError` reports THAT rank's error: the first failure in time,
  preferring a real error over the "Connection closed by peer" the other ranks see after it;
  the other ranks are stopped at once. The message holds the traceback summarized in one line
  and the path of the full traceback, kept in the launch's log directory.

How the stuck rank is found: each worker's `comm` is a `WatchedComm`, which writes to a board
shared with the parent (one row per rank) whether the rank is inside a collective (and which,
and how many it has entered) or computing, and the training step it noted. At the deadline, a
rank that is computing while others wait inside a collective is the one they wait for; if every
rank waits inside a collective, the ranks with the fewest collectives entered are behind. The
parent asks a stuck rank for its Python stack (`faulthandler` on SIGUSR1) before stopping it,
and the path of that stack is in the message.

The log directory (`gradstats-dist-*` under the system temp dir, or `log_dir`) is removed after
a clean run and kept after a failure.
Inside the processes torch uses max(1, cores // W) intra-op threads, as the simulator's threads
(`coders.communication.comm.run_threads`), so both runtimes compute the same numbers.
"""

from __future__ import annotations

import datetime
import faulthandler
import os
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from coders.communication.comm import DistComm

__all__ = ["launch", "WatchedComm", "RankFailedError", "RankTimeoutError", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 600.0
"""Seconds for a whole launch (every rank, every spec of a `train_many`)."""

_OPS = ("computing", "all_reduce", "all_gather", "broadcast", "exchange", "barrier")
_STARTING, _DONE, _FAILED = -1.0, -2.0, -3.0
_FIELDS = 5  # per rank: state (op index or a code above), collectives entered, noted step, time of change,
# steps noted in all (over the several runs of one launch: what a progress bar counts)
_FOLLOW_ON = ("connection closed", "connection reset", "broken pipe", "timed out", "timeout",
              "connection refused", "socket", "gloo")


class RankFailedError(RuntimeError):
    """A worker process failed: `rank`, `summary` (one line), `traceback_path` (the full traceback)."""

    def __init__(self, message: str, rank: int, summary: str, traceback_path: str | None):
        super().__init__(message)
        self.rank = rank
        self.summary = summary
        self.traceback_path = traceback_path


class RankTimeoutError(RankFailedError, TimeoutError):
    """The launch ran past its deadline: `rank` is the (first) stuck rank, `stuck` all of them."""

    def __init__(self, message: str, rank: int, stuck: list[int], stack_path: str | None):
        super().__init__(message, rank, message, stack_path)
        self.stuck = stuck


class WatchedComm:
    """A `Comm` that reports on the shared board what its rank is doing (see module docstring)."""

    def __init__(self, inner: Any, board: Any):
        self._inner = inner
        self._board = board
        self.rank = inner.rank
        self.world_size = inner.world_size
        self._entered = 0
        self._step = 0
        self._noted = 0
        self._set(0.0)

    def __getattr__(self, name: str) -> Any:  # device, backend, dist, group ... of the wrapped comm
        return getattr(self._inner, name)

    def _set(self, state: float) -> None:
        row = self.rank * _FIELDS
        self._board[row: row + _FIELDS] = [state, float(self._entered), float(self._step), time.time(),
                                           float(self._noted)]

    def note_step(self, step: int) -> None:
        """Record the training step this rank is in (shown when it is stuck)."""
        self._step = int(step)
        self._noted += 1
        self._set(self._board[self.rank * _FIELDS])

    def _call(self, op: str, *args: Any, **kwargs: Any) -> Any:
        self._entered += 1
        self._set(float(_OPS.index(op)))
        out = getattr(self._inner, op)(*args, **kwargs)
        self._set(0.0)
        return out

    def all_reduce(self, t: Tensor) -> Tensor:
        return self._call("all_reduce", t)

    def all_gather(self, t: Tensor) -> list[Tensor]:
        return self._call("all_gather", t)

    def broadcast(self, t: Tensor, src: int = 0) -> Tensor:
        return self._call("broadcast", t, src)

    def exchange(self, sends: dict[int, Tensor]) -> dict[int, Tensor]:
        return self._call("exchange", sends)

    def barrier(self) -> None:
        return self._call("barrier")


def intra_op_threads(world_size: int) -> int:
    """Threads per worker: the cores shared by the W workers (as the simulator's threads)."""
    return max(1, (os.cpu_count() or 1) // max(world_size, 1))


def _summary(exc: BaseException) -> str:
    """`Type: message (file:line in function)` of the innermost frame: a traceback in one line."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:
        f = frames[-1]
        where = f" (at {f.filename}:{f.lineno} in {f.name})"
    message = " ".join(str(exc).split())
    if len(message) > 300:
        message = message[:300] + " ..."
    return f"{type(exc).__name__}: {message}{where}"


def _entry(rank: int, world_size: int, backend: str, init_file: str, log_dir: str, timeout: float,
           board: Any, fn: Callable[..., Any], args: tuple) -> None:
    import torch.distributed as dist

    board[rank * _FIELDS: (rank + 1) * _FIELDS] = [_STARTING, 0.0, 0.0, time.time(), 0.0]
    stack = open(os.path.join(log_dir, f"rank{rank}.stack.txt"), "w")  # noqa: SIM115 - open for the process
    faulthandler.register(signal.SIGUSR1, file=stack, all_threads=True)
    torch.set_num_threads(min(intra_op_threads(world_size), torch.get_num_threads()))
    result_path = os.path.join(log_dir, f"rank{rank}.pt")
    try:
        if backend == "nccl":
            torch.cuda.set_device(rank % torch.cuda.device_count())
        # the collectives time out on their own too (a rank whose peer vanished without a trace)
        dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=max(timeout, 1.0)))
        try:
            result = fn(WatchedComm(DistComm(), board), *args)
        finally:
            dist.destroy_process_group()
        torch.save({"ok": True, "value": result}, result_path)
        board[rank * _FIELDS] = _DONE
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        when = time.time()
        board[rank * _FIELDS] = _FAILED
        tb_path = os.path.join(log_dir, f"rank{rank}.traceback.txt")
        with open(tb_path, "w") as f:
            f.write(traceback.format_exc())
        torch.save({"ok": False, "summary": _summary(e), "time": when, "traceback_path": tb_path},
                   result_path)
        raise SystemExit(1) from None


def _is_follow_on(summary: str) -> bool:
    low = summary.lower()
    return any(word in low for word in _FOLLOW_ON)


def _stop(procs: list) -> None:
    for p in procs:
        if p.is_alive():
            p.kill()
    for p in procs:
        p.join()


def _board_rows(board: Any, world_size: int) -> list[tuple[float, int, int, float]]:
    rows = []
    for r in range(world_size):
        state, entered, step, when = board[r * _FIELDS: r * _FIELDS + 4]
        rows.append((state, int(entered), int(step), when))
    return rows


def _stuck_ranks(rows: list[tuple[float, int, int, float]], alive: list[bool]) -> list[int]:
    """The ranks the others wait for (see module docstring)."""
    running = [r for r in range(len(rows)) if alive[r]]
    waiting = [r for r in running if rows[r][0] >= 1]
    outside = [r for r in running if rows[r][0] < 1]
    if waiting and outside:
        return outside
    if waiting:
        fewest = min(rows[r][1] for r in waiting)
        return [r for r in waiting if rows[r][1] == fewest]
    return running


def _describe(r: int, row: tuple[float, int, int, float], now: float) -> str:
    state, entered, step, when = row
    ago = f"{now - when:.1f} s"
    at = f"step {step}, " if step else ""
    if state == _STARTING:
        return f"rank {r} never joined the group (starting for {ago})"
    if state >= 1:
        return f"rank {r} waits in {_OPS[int(state)]} #{entered} ({at}for {ago})"
    return f"rank {r} is outside any collective ({at}{entered} collectives done, for {ago})"


def launch(world_size: int, fn: Callable[..., Any], *args: Any, backend: str = "gloo",
           timeout: float = DEFAULT_TIMEOUT, log_dir: str | None = None,
           on_steps: Callable[[int], None] | None = None) -> list:
    """Run `fn(comm, *args)` in `world_size` processes under one deadline; results by rank.

    `fn` and `args` must be picklable (a module-level function). Raises `RankFailedError` (the
    first rank that failed, its one-line traceback and the file with the full one) or
    `RankTimeoutError` (the stuck rank, after `timeout` seconds in all). `on_steps(n)`, when
    given, is called in this process while it polls, with the number of steps rank 0 has
    started in all (`comm.note_step` calls): what a progress bar shows.
    """
    import torch.multiprocessing as mp

    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    if not (timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("backend 'nccl' needs CUDA, which is not available")
    log = log_dir or tempfile.mkdtemp(prefix="gradstats-dist-")
    os.makedirs(log, exist_ok=True)
    ctx = mp.get_context("spawn")
    board = ctx.RawArray("d", world_size * _FIELDS)
    for r in range(world_size):
        board[r * _FIELDS] = _STARTING
        board[r * _FIELDS + 3] = time.time()
    init_file = os.path.join(log, "store")
    start = time.monotonic()
    procs = [ctx.Process(target=_entry,
                         args=(r, world_size, backend, init_file, log, timeout, board, fn, args))
             for r in range(world_size)]
    for p in procs:
        p.start()
    try:
        failure = _wait(procs, board, log, start, timeout, on_steps)
    except BaseException:
        _stop(procs)
        raise
    _stop(procs)
    if failure is not None:
        raise failure
    results = [torch.load(os.path.join(log, f"rank{r}.pt"), weights_only=False)["value"]
               for r in range(world_size)]
    if log_dir is None:
        shutil.rmtree(log, ignore_errors=True)
    return results


def _record(log: str, r: int) -> dict | None:
    path = os.path.join(log, f"rank{r}.pt")
    if not os.path.exists(path):
        return None
    try:
        return torch.load(path, weights_only=False)
    except Exception:  # noqa: BLE001 - a record still being written: read it on the next poll
        return None


def _wait(procs: list, board: Any, log: str, start: float, timeout: float,
          on_steps: Callable[[int], None] | None = None) -> RankFailedError | None:
    """Poll the ranks until all succeeded (None), one failed, or the deadline passed (the error)."""
    w = len(procs)
    while True:
        if on_steps is not None:
            on_steps(int(board[4]))  # rank 0's steps noted in all
        exited = [p.exitcode is not None for p in procs]
        failed = [r for r in range(w) if exited[r] and procs[r].exitcode != 0]
        if failed:
            time.sleep(0.2)  # a failing rank's peers fail within moments: read every record written
            return _first_failure(procs, log)
        if all(exited):
            return None
        if time.monotonic() - start > timeout:
            return _timeout(procs, board, log, timeout)
        time.sleep(0.05)


def _first_failure(procs: list, log: str) -> RankFailedError:
    """The root cause: the earliest failure, a real error before a follow-on connection error."""
    recs = {r: _record(log, r) for r in range(len(procs))}
    errors = [(rec["time"], r, rec) for r, rec in recs.items() if rec is not None and not rec["ok"]]
    if errors:
        real = [e for e in errors if not _is_follow_on(e[2]["summary"])]
        _, r, rec = min(real or errors)
        others = sorted(x for _, x, _ in errors if x != r)
        also = f"; rank(s) {others} failed after it" if others else ""
        msg = (f"rank {r} of {len(procs)} failed: {rec['summary']}; full traceback in {rec['traceback_path']}"
               f"{also}")
        return RankFailedError(msg, r, rec["summary"], rec["traceback_path"])
    # no record: the rank died without Python unwinding (killed, out of memory, crashed)
    dead = [r for r, p in enumerate(procs) if p.exitcode not in (None, 0)]
    r = dead[0]
    code = procs[r].exitcode
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    summary = f"rank {r} {how} before reporting an error (out of memory? killed?)"
    return RankFailedError(f"rank {r} of {len(procs)} failed: {summary}; logs in {log}", r, summary, None)


def _timeout(procs: list, board: Any, log: str, timeout: float) -> RankTimeoutError:
    now = time.time()
    alive = [p.exitcode is None for p in procs]
    rows = _board_rows(board, len(procs))
    stuck = _stuck_ranks(rows, alive)
    for r in stuck:  # ask for the stuck ranks' Python stacks before they are stopped
        if procs[r].pid is not None and alive[r]:
            try:
                os.kill(procs[r].pid, signal.SIGUSR1)
            except OSError:
                pass
    time.sleep(0.5)
    stack = os.path.join(log, f"rank{stuck[0]}.stack.txt")
    stack_path = stack if os.path.exists(stack) and os.path.getsize(stack) > 0 else None
    states = "; ".join(_describe(r, rows[r], now) for r in range(len(procs)) if alive[r])
    names = ", ".join(map(str, stuck))
    msg = (f"distributed run passed its {timeout:g} s deadline: rank {names} of {len(procs)} is stuck "
           f"({states})" + (f"; stack of rank {stuck[0]} in {stack_path}" if stack_path else ""))
    return RankTimeoutError(msg, stuck[0], stuck, stack_path)
