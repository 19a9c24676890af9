"""One function over every record of a capture, serially, in a process pool or on Dask (`map_records`).

The whole-capture stages (`gradstats.fit_capture`, `coders.report.code_capture`) do independent,
deterministic work per record (one tensor), so the records can run anywhere and the results,
returned in task order, equal the serial ones to the last bit. Engines:

- ``"process"`` (default): ``jobs`` worker processes on this machine. Fork where the platform has it
  (a worker starts in milliseconds and inherits the imported modules); spawn when a CUDA device is
  used (a CUDA context does not survive a fork). As torch's DataLoader workers do, each worker runs
  one thread (torch and the BLAS pools), so ``jobs`` is the number of cores used; the serial run
  (``jobs=1``) is held to one thread as well, so that ``jobs=N`` is compared with one core.
- ``"dask"``: the same function as tasks of a `dask.distributed` cluster (``pip install
  'gradstats[dask]'``): ``scheduler`` is its address (``tcp://host:8786``) or a ``Client``; None
  starts a ``LocalCluster`` of ``jobs`` single-threaded worker processes for the call. Every worker
  must read the capture at the same absolute path (a shared filesystem). Worker processes give the
  serial table to the last bit; an in-process cluster (``processes=False``) may not (see
  `_run_dask_chunk`).

Each worker opens the capture once from its path; only the tasks and the results travel.
Scheduling (`Schedule`) is largest-first (longest processing time first, Graham 1969) on
estimated costs: a task's entries, scaled by the CPU seconds per entry measured on the finished
tasks of its group (its layer), cut into chunks that shrink as the work left shrinks (guided
self-scheduling, Polychronopoulos & Kuck 1987), so that the last chunks even the load out and no
chunk is so small that sending it costs more than running it. The next chunk is chosen when a
result arrives (in flight: one chunk more than the workers in a pool, two per worker on Dask).
Each pooled run logs an `EngineRun` (per worker CPU seconds, critical path) at DEBUG level on the
``captures.engine`` logger.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from captures.progress import Progress, open_bar

ENGINES = ("process", "dask")
"""The engines `map_records` runs on."""

TASK_COST_ENTRIES = 1 << 14
"""A record's fixed cost (opening it, Python per call, the result's transfer) in entries of work."""

MIN_CHUNK_ENTRIES = 1 << 16
"""No chunk holds less work than this (in entries), so that its round trip (~1 ms) stays a few %."""

CHUNKS_PER_WORKER = 4
"""Guided self-scheduling: each chunk takes 1 / (CHUNKS_PER_WORKER * workers) of the work left."""

log = logging.getLogger(__name__)


@dataclass
class EngineRun:
    """What one pooled `map_records` call cost: per worker CPU seconds and the parent's.

    ``critical_path_s`` is the wall time an idle machine of ``workers`` cores would need at these CPU
    costs: max(busiest worker, (all workers + parent) / workers).
    """

    engine: str
    workers: int
    tasks: int
    chunks: int
    wall_s: float = 0.0
    parent_cpu_s: float = 0.0
    worker_cpu_s: dict[int, float] = field(default_factory=dict)
    worker_tasks: dict[int, int] = field(default_factory=dict)

    @property
    def critical_path_s(self) -> float:
        busy = list(self.worker_cpu_s.values()) or [0.0]
        return max(max(busy), (sum(busy) + self.parent_cpu_s) / max(self.workers, 1))


def _cost(size: int | None) -> int:
    return max(int(size or 0), 0) + TASK_COST_ENTRIES


class Schedule:
    """Which tasks go next: the largest estimated cost first (LPT), in chunks that shrink with the
    work left (guided self-scheduling), estimates learned from the tasks done.

    A task's cost is its size in entries plus `TASK_COST_ENTRIES`, times its group's measured CPU
    seconds per entry relative to the mean over every task done (1 for a group not seen yet). With
    one group per layer, a layer's first record teaches what its records at the other steps cost
    (a zero-inflated or heavy-tailed layer fits slower than its size says). Ties keep the task order.
    """

    def __init__(self, sizes: Sequence[int | None], workers: int,
                 groups: Sequence[Any] | None = None) -> None:
        self.cost = [_cost(s) for s in sizes]
        self.workers = max(int(workers), 1)
        self.groups = list(groups) if groups is not None else [None] * len(self.cost)
        if len(self.groups) != len(self.cost):
            raise ValueError(f"groups has {len(self.groups)} entries for {len(self.cost)} tasks")
        queues: dict[Any, list[int]] = {}
        for i in sorted(range(len(self.cost)), key=lambda i: -self.cost[i]):
            queues.setdefault(self.groups[i], []).append(i)
        self._queues = {g: q[::-1] for g, q in queues.items()}  # popped from the end: largest first
        self._left = {g: float(sum(self.cost[i] for i in q)) for g, q in queues.items()}
        self._seconds: dict[Any, float] = {}
        self._units: dict[Any, float] = {}
        self._total_s = 0.0
        self._total_u = 0.0

    def _scale(self, group: Any) -> float:
        units = self._units.get(group, 0.0)
        if units <= 0 or self._total_s <= 0:
            return 1.0
        return max(self._seconds[group] / units / (self._total_s / self._total_u), 1e-3)

    def __bool__(self) -> bool:
        return any(self._queues.values())

    def next_chunk(self) -> list[int]:
        """The next tasks to send, largest estimate first, together >= 1 / (4 workers) of the work
        left and >= `MIN_CHUNK_ENTRIES` (empty when none are left)."""
        scale = {g: self._scale(g) for g, q in self._queues.items() if q}
        left = sum(self._left[g] * scale[g] for g in scale)
        target = max(left / (CHUNKS_PER_WORKER * self.workers), MIN_CHUNK_ENTRIES)
        chunk: list[int] = []
        got = 0.0
        while got < target and scale:
            g = max(scale, key=lambda g: (self.cost[self._queues[g][-1]] * scale[g], -self._queues[g][-1]))
            i = self._queues[g].pop()
            self._left[g] -= self.cost[i]
            chunk.append(i)
            got += self.cost[i] * scale[g]
            if not self._queues[g]:
                del scale[g]
        return chunk

    def done(self, index: int, cpu_s: float) -> None:
        """Task `index` took `cpu_s` CPU seconds: its group's estimate learns it."""
        g = self.groups[index]
        cpu_s = max(float(cpu_s), 0.0)
        self._seconds[g] = self._seconds.get(g, 0.0) + cpu_s
        self._units[g] = self._units.get(g, 0.0) + self.cost[index]
        self._total_s += cpu_s
        self._total_u += self.cost[index]


def plan_chunks(sizes: Sequence[int | None], workers: int) -> list[list[int]]:
    """The chunks a `Schedule` sends when nothing is learned (all tasks in one group)."""
    schedule = Schedule(sizes, workers)
    chunks = []
    while schedule:
        chunks.append(schedule.next_chunk())
    return chunks


_HELD = {"count": 0, "torch": 1, "limits": None}
_HELD_LOCK = threading.Lock()


@contextmanager
def one_thread() -> Iterator[None]:
    """torch's intra-op pool and the BLAS / OpenMP pools held to one thread, restored afterwards.

    Why: results must not depend on where a record runs, and a parallel reduction (OpenBLAS's
    ``ddot`` behind ``np.dot``, torch's sums) adds in an order that depends on the thread count, so
    the last bits would; and on a busy machine those threads spin for more CPU than they save
    (``code_capture`` serial: 4.7 s CPU with OpenBLAS's 2 threads, 3.8 s with one, same wall).
    Re-entrant and thread-safe (the threads of an in-process Dask worker share it): the first
    entry sets the limits, the last exit restores them.
    """
    import torch

    with _HELD_LOCK:
        if _HELD["count"] == 0:
            _HELD["torch"] = torch.get_num_threads()
            try:
                from threadpoolctl import threadpool_limits

                _HELD["limits"] = threadpool_limits(1)
            except ImportError:  # threadpoolctl comes with scikit-learn; without it only torch is held
                _HELD["limits"] = None
            torch.set_num_threads(1)
        _HELD["count"] += 1
    try:
        yield
    finally:
        with _HELD_LOCK:
            _HELD["count"] -= 1
            if _HELD["count"] == 0:
                torch.set_num_threads(_HELD["torch"])
                if _HELD["limits"] is not None:
                    _HELD["limits"].restore_original_limits()


def _check(engine: str, jobs: int | None) -> None:
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs must be an int >= 1 (or None for all CPUs), got {jobs!r}")


def map_records(fn: Callable[[Any, Any], Any], tasks: Sequence[Any], *, capture: Any, jobs: int | None = 1,
                engine: str = "process", scheduler: Any = None, sizes: Sequence[int | None] | None = None,
                groups: Sequence[Any] | None = None, device: str = "cpu", progress: Progress = False,
                desc: str = "records", unit: str = "record",
                on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """``[fn(capture, task) for task in tasks]``, computed serially, in a process pool or on Dask.

    fn: a module-level function (or a `functools.partial` of one) taking the opened capture and one
    task; in a pool it runs in the workers, each holding its own capture opened from
    ``capture.path`` (with ``capture.verify``). capture: a `Capture` (or anything with ``get`` /
    ``records``; one without a ``path`` runs serially). jobs: worker processes (None: all CPUs);
    1 with the process engine runs in this process. engine / scheduler: see the module doc.
    sizes: each task's entries, groups: each task's group (e.g. its layer: tasks of a group cost
    alike per entry), both for the order (`Schedule`; None: all alike). device: 'cpu' or the
    torch device ``fn`` uses (not 'cpu': the pool spawns). progress: a bar over the tasks
    (`captures.progress`). on_result(index, result): called here as each result arrives.
    Returns the results in task order; the first error of a task is raised here.
    """
    _check(engine, jobs)
    tasks = list(tasks)
    sizes = list(sizes) if sizes is not None else [None] * len(tasks)
    if len(sizes) != len(tasks):
        raise ValueError(f"sizes has {len(sizes)} entries for {len(tasks)} tasks")
    workers = (os.cpu_count() or 1) if jobs is None else jobs
    path = getattr(capture, "path", None)
    bar = open_bar(progress, total=len(tasks), desc=desc, unit=unit)
    results: list[Any] = [None] * len(tasks)

    def done(index: int, result: Any) -> None:
        results[index] = result
        if on_result is not None:
            on_result(index, result)
        bar.update()

    where = (str(Path(path).resolve()), bool(getattr(capture, "verify", False))) if path is not None else None
    try:
        if engine == "dask":
            if where is None:
                raise ValueError("engine 'dask' needs a capture opened from a path its workers can read")
            _dask_map(fn, tasks, sizes, groups, *where, scheduler, jobs, done)
        elif min(workers, len(tasks)) <= 1 or where is None:
            with one_thread():
                for i, task in enumerate(tasks):
                    done(i, fn(capture, task))
        else:
            _pool_map(fn, tasks, Schedule(sizes, min(workers, len(tasks)), groups), *where, device, done)
    finally:
        bar.close()
    return results


def _run_tasks(fn: Callable[[Any, Any], Any], capture: Any,
               chunk: list[tuple[int, Any]]) -> tuple[int, float, list[tuple[int, Any, float]]]:
    """(pid, CPU seconds of the chunk, [(index, result, CPU seconds of the task)])."""
    start = time.process_time()
    out = []
    for i, task in chunk:
        cpu = time.process_time()
        out.append((i, fn(capture, task), time.process_time() - cpu))
    return os.getpid(), time.process_time() - start, out


class _Driver:
    """Keeps `in_flight` chunks submitted, the next one chosen by the `Schedule` as results arrive."""

    def __init__(self, schedule: Schedule, tasks: list[Any], run: EngineRun,
                 done: Callable[[int, Any], None]) -> None:
        self.schedule, self.tasks, self.run, self.done = schedule, tasks, run, done

    def chunks(self) -> Iterator[list[tuple[int, Any]]]:
        while self.schedule:
            chunk = self.schedule.next_chunk()
            self.run.chunks += 1
            yield [(i, self.tasks[i]) for i in chunk]

    def take(self, reply: tuple[int, float, list[tuple[int, Any, float]]]) -> None:
        pid, chunk_cpu, out = reply
        self.run.worker_cpu_s[pid] = self.run.worker_cpu_s.get(pid, 0.0) + chunk_cpu
        self.run.worker_tasks[pid] = self.run.worker_tasks.get(pid, 0) + len(out)
        for i, result, cpu_s in out:
            self.schedule.done(i, cpu_s)
            self.done(i, result)


# --- the process engine ---------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _start_worker(fn: Callable[[Any, Any], Any], path: str, verify: bool) -> None:
    """Pool initializer: one thread, one capture handle and the function, once per worker process."""
    import torch

    from captures.store import open_capture

    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    _WORKER.update(fn=fn, capture=open_capture(path, verify=verify))


def _run_chunk(chunk: list[tuple[int, Any]]) -> tuple[int, float, list[tuple[int, Any, float]]]:
    return _run_tasks(_WORKER["fn"], _WORKER["capture"], chunk)


def _trim_heap() -> None:
    """Give the parent's free heap back to the OS before forking (glibc's malloc_trim; a no-op
    elsewhere). A forked worker reuses the parent's free chunks, and each first write to one of
    those pages copies it (copy-on-write): after a large run in the parent (e.g. a code_capture
    with verify=True) that cost the workers ~15 % more CPU than the serial run."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _pool_map(fn: Callable[[Any, Any], Any], tasks: list[Any], schedule: Schedule, path: str, verify: bool,
              device: str, done: Callable[[int, Any], None]) -> None:
    workers = schedule.workers
    run = EngineRun("process", workers, len(tasks), 0)
    driver = _Driver(schedule, tasks, run, done)
    wall, cpu = time.perf_counter(), time.process_time()
    fork = device == "cpu" and "fork" in multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if fork else "spawn")
    if fork:
        _trim_heap()
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_start_worker,
                               initargs=(fn, path, verify))
    try:
        # one chunk more than workers in flight (as the executor queues), so none waits for the next
        chunks = driver.chunks()
        pending = {pool.submit(_run_chunk, c) for c in itertools.islice(chunks, workers + 1)}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                driver.take(fut.result())
            pending |= {pool.submit(_run_chunk, c) for c in itertools.islice(chunks, len(finished))}
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    run.wall_s, run.parent_cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    log.debug("process pool: %d workers, %d tasks in %d chunks, %.3f s wall, critical path %.3f s",
              workers, len(tasks), run.chunks, run.wall_s, run.critical_path_s, extra={"engine_run": run})


# --- the Dask engine ------------------------------------------------------------------------------
DASK_MISSING = "engine 'dask' needs dask.distributed: pip install 'gradstats[dask]'"

DASK_NO_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
"""The Dask setting unset for the workers of a local cluster. Dask starts workers with glibc's
MALLOC_TRIM_THRESHOLD_=65536, which also fixes the mmap threshold, so every large temporary array
is mapped afresh and page-faulted in: a GenNorm record's fits took 0.86 s CPU there against 0.57 s
in this process (measured, 1M entries). On a cluster of your own, set it to null in the workers'
Dask config (README); a DASK_* environment variable cannot, as Dask lower-cases its keys."""

_DASK_CAPTURES: dict[tuple[str, bool], Any] = {}
_DASK_LOCK = threading.Lock()


@contextmanager
def dask_client(scheduler: Any = None, jobs: int | None = None) -> Iterator[Any]:
    """A `distributed.Client`: ``scheduler`` itself if it is one, connected to it if it is an address,
    else on a fresh ``LocalCluster`` of ``jobs`` (None: all CPUs) one-thread worker processes, closed
    on exit (a client or a cluster this did not start is left running)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ImportError(DASK_MISSING) from None
    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler is not None:
        with Client(scheduler) as client:
            yield client
        return
    import dask

    saved = dict(os.environ)
    with dask.config.set({DASK_NO_TRIM: None}):
        cluster = LocalCluster(n_workers=jobs or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
    # a nanny sets its variables in this process too before it spawns (dask's docs call it poisoning)
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)
    with cluster, Client(cluster) as client:
        yield client


def _dask_capture(path: str, verify: bool) -> Any:
    """The capture of this Dask worker process, opened on its first task."""
    with _DASK_LOCK:
        if (path, verify) not in _DASK_CAPTURES:
            from captures.store import open_capture

            _DASK_CAPTURES[(path, verify)] = open_capture(path, verify=verify)
        return _DASK_CAPTURES[(path, verify)]


def _run_dask_chunk(fn: Callable[[Any, Any], Any], path: str, verify: bool,
                    chunk: list[tuple[int, Any]]) -> tuple[int, float, list[tuple[int, Any, float]]]:
    """`_run_tasks` on a Dask worker, its capture opened once per worker process."""
    capture = _dask_capture(path, verify)
    # the serial run's thread count, hence its last bits. A worker process of a Dask nanny starts with
    # OMP / OPENBLAS / MKL_NUM_THREADS=1 (distributed.nanny.pre-spawn-environ); in an in-process
    # cluster (processes=False) OpenBLAS ignores a limit set from the worker's thread, so there a
    # large record's np.dot may differ from the serial run in its last bits
    with one_thread():
        return _run_tasks(fn, capture, chunk)


def _dask_map(fn: Callable[[Any, Any], Any], tasks: list[Any], sizes: list[int | None], groups: Any,
              path: str, verify: bool, scheduler: Any, jobs: int | None,
              done: Callable[[int, Any], None]) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    with dask_client(scheduler, jobs) as client:
        from distributed import as_completed

        workers = max(len(client.scheduler_info().get("workers", {})), 1)
        run = EngineRun("dask", workers, len(tasks), 0)
        driver = _Driver(Schedule(sizes, workers, groups), tasks, run, done)
        chunks = driver.chunks()
        # two chunks per worker in flight: a round trip through the scheduler takes milliseconds
        futures = [client.submit(_run_dask_chunk, fn, path, verify, c, pure=False)
                   for c in itertools.islice(chunks, 2 * workers)]
        queue = as_completed(futures)
        try:
            for fut in queue:
                driver.take(fut.result())
                for c in itertools.islice(chunks, 1):
                    new = client.submit(_run_dask_chunk, fn, path, verify, c, pure=False)
                    futures.append(new)
                    queue.add(new)
        finally:
            client.cancel([f for f in futures if not f.done()])
    run.wall_s, run.parent_cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    log.debug("dask: %d workers, %d tasks in %d chunks, %.3f s wall", workers, len(tasks), run.chunks,
              run.wall_s, extra={"engine_run": run})
