"""captures.engine.map_records: the serial map, the process pool and Dask give the same results in
task order; largest-first guided chunks; one thread per worker; errors and bad arguments."""

from __future__ import annotations

import os
import sys
from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch

from captures import write_capture
from captures.engine import (
    CHUNKS_PER_WORKER,
    MIN_CHUNK_ENTRIES,
    TASK_COST_ENTRIES,
    EngineRun,
    Schedule,
    dask_client,
    map_records,
    one_thread,
    plan_chunks,
)

LAYERS = {"big.weight": (300, 200), "mid.weight": (100, 50), "small.bias": (40,)}


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    rng = np.random.default_rng(0)
    grads = {step: {name: rng.laplace(0, 1 + step, size=shape).astype(np.float32)
                    for name, shape in LAYERS.items()} for step in (0, 1, 2)}
    return write_capture(tmp_path_factory.mktemp("engine") / "capture", grads)


def _tasks(capture):
    keys = [(s, name) for s in capture.steps for name in capture.layers]
    return keys, [int(np.prod(capture.shapes[name])) for _, name in keys]


def _moments(capture, task, scale=1.0):
    """Per record: exact float64 sums, and the thread counts the record ran under."""
    from threadpoolctl import threadpool_info

    step, layer = task
    x = capture.get(layer, step).astype(np.float64).ravel()
    blas = max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"), default=1)
    return step, layer, scale * float(x.sum()), float(np.abs(x).max()), torch.get_num_threads(), blas


_MARK: list[int] = []  # set in the test process: a forked worker inherits it, a spawned one does not


def _marked(capture, task):
    return task, len(_MARK)


def _fails_on_mid(capture, task):
    if task[1] == "mid.weight":
        raise ValueError(f"record {task} is bad")
    return task


def test_plan_chunks_covers_every_task_once_largest_first_and_shrinking():
    rng = np.random.default_rng(1)
    sizes = [int(v) for v in rng.integers(0, 2_000_000, 40)] + [None] * 3
    for workers in (1, 2, 8):
        chunks = plan_chunks(sizes, workers)
        flat = [i for c in chunks for i in c]
        assert sorted(flat) == list(range(len(sizes)))
        cost = [(s or 0) + TASK_COST_ENTRIES for s in sizes]
        assert [cost[i] for i in flat] == sorted(cost, reverse=True)  # longest processing time first
        work = [sum(cost[i] for i in c) for c in chunks]
        left = sum(cost)
        for w in work[:-1]:  # each closed chunk: >= 1 / (4 workers) of what was left, and >= the floor
            assert w >= max(left / (CHUNKS_PER_WORKER * workers), MIN_CHUNK_ENTRIES)
            left -= w
    # the largest task stands alone at the front; equal small tasks are grouped to the floor in task order
    assert plan_chunks([10, 5_000_000, 10, 10], 2)[0] == [1]
    assert plan_chunks([0] * 10, 2) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert plan_chunks([], 4) == []


def _makespan(seconds, groups, workers):
    """Simulate `workers` processes asking a Schedule for a chunk whenever one is free, each task's
    time learned when its chunk ends; the finish time of the last."""
    schedule = Schedule([1_000_000] * len(seconds), workers, groups)
    running = []  # (end time, worker, chunk)
    idle = list(range(workers))
    now = 0.0
    while schedule or running:
        while idle and schedule:
            chunk = schedule.next_chunk()
            running.append((now + sum(seconds[i] for i in chunk), idle.pop(0), chunk))
        running.sort()
        now, worker, chunk = running.pop(0)
        for i in chunk:
            schedule.done(i, seconds[i])
        idle.append(worker)
    return now


def test_schedule_learns_a_groups_cost_and_balances_the_end():
    # issue 13's synthetic capture: 2 steps x 4 equal-size layers, the zero-inflated ones 2x slower
    seconds = [0.26, 0.5, 0.26, 0.5] * 2
    layers = [0, 1, 2, 3] * 2
    static = _makespan(seconds, None, 2)  # sizes alone: 3 fast + 1 slow on one worker, 1 + 3 on the other
    learned = _makespan(seconds, layers, 2)
    assert static == pytest.approx(0.26 + 3 * 0.5)
    # 2 slow + 2 fast on each worker; 0.02 s idle at the end (a layer's cost is known when its first
    # record ends), against 0.24 s from the sizes alone
    assert learned == pytest.approx(sum(seconds) / 2 + 0.02)
    schedule = Schedule([10, 10, 10, 10], 2, ["a", "b", "a", "b"])
    first = schedule.next_chunk()
    assert first == [0, 1, 2, 3]  # small tasks: one chunk of >= MIN_CHUNK_ENTRIES
    schedule = Schedule([1 << 20] * 4, 2, ["a", "b", "a", "b"])
    assert schedule.next_chunk() == [0] and schedule.next_chunk() == [1]
    schedule.done(0, 1.0)
    schedule.done(1, 3.0)  # b is 3x slower per entry: its other task goes first
    assert schedule.next_chunk() == [3] and schedule.next_chunk() == [2] and not schedule
    with pytest.raises(ValueError, match="groups has 1 entries for 4 tasks"):
        Schedule([1, 2, 3, 4], 2, ["a"])


def test_engine_run_critical_path():
    run = EngineRun("process", 2, 8, 8, parent_cpu_s=0.2, worker_cpu_s={1: 1.0, 2: 1.5})
    assert run.critical_path_s == 1.5  # the busiest worker
    run.worker_cpu_s = {1: 1.4, 2: 1.5}
    assert run.critical_path_s == pytest.approx((1.4 + 1.5 + 0.2) / 2)  # the parent shares the cores


@pytest.mark.parametrize("jobs", [2, 3])
def test_process_pool_returns_the_serial_results_in_task_order_on_one_thread(capture, jobs):
    keys, sizes = _tasks(capture)
    fn = partial(_moments, scale=2.0)
    before = torch.get_num_threads()
    serial = map_records(fn, keys, capture=capture, jobs=1, sizes=sizes)
    assert torch.get_num_threads() == before  # the serial run's one thread is given back
    seen = []
    pool = map_records(fn, keys, capture=capture, jobs=jobs, sizes=sizes,
                       on_result=lambda i, r: seen.append(i))
    assert pool == serial and [r[:2] for r in pool] == keys
    assert sorted(seen) == list(range(len(keys)))
    ref = [2.0 * float(capture.get(layer, step).astype(np.float64).sum()) for step, layer in keys]
    assert [r[2] for r in pool] == ref
    assert {(r[4], r[5]) for r in serial} == {(1, 1)}  # torch and BLAS held to one thread
    # the pool opened the capture from its path: a handle without one runs serially in this process
    assert map_records(fn, keys, capture=_NoPath(capture), jobs=jobs) == serial


class _NoPath:
    def __init__(self, capture):
        self.get = capture.get


def test_the_first_task_error_is_raised_with_its_message(capture):
    keys, sizes = _tasks(capture)
    with pytest.raises(ValueError, match=r"record \(0, 'mid.weight'\) is bad"):  # serially: the first
        map_records(_fails_on_mid, keys, capture=capture, jobs=1, sizes=sizes)
    with pytest.raises(ValueError, match=r"record \([012], 'mid.weight'\) is bad"):  # pooled: first seen
        map_records(_fails_on_mid, keys, capture=capture, jobs=2, sizes=sizes)


def test_progress_counts_every_task_and_closes(capture):
    keys, sizes = _tasks(capture)

    class Bar:
        def __init__(self, **kw):
            self.kw, self.n, self.closed = kw, 0, 0
            bars.append(self)

        def update(self, n=1):
            self.n += n

        def set_postfix_str(self, s="", refresh=True):
            pass

        def close(self):
            self.closed += 1

    bars: list[Bar] = []
    map_records(_moments, keys, capture=capture, jobs=2, sizes=sizes, progress=Bar, desc="fit")
    assert [(b.kw, b.n, b.closed) for b in bars] == [({"total": 9, "desc": "fit", "unit": "record"}, 9, 1)]


def test_bad_engine_jobs_and_sizes_are_refused(capture):
    keys, _ = _tasks(capture)
    with pytest.raises(ValueError, match="unknown engine 'ray'; choose one of process, dask"):
        map_records(_moments, keys, capture=capture, engine="ray")
    for jobs in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="jobs must be an int >= 1"):
            map_records(_moments, keys, capture=capture, jobs=jobs)
    with pytest.raises(ValueError, match="sizes has 2 entries for 9 tasks"):
        map_records(_moments, keys, capture=capture, sizes=[1, 2])


def test_one_thread_is_reentrant_and_restores():
    before = torch.get_num_threads()
    with one_thread():
        with one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1  # the outer hold still stands
    assert torch.get_num_threads() == before


def test_dask_missing_names_the_extra(capture, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    keys, _ = _tasks(capture)
    with pytest.raises(ImportError, match=r"pip install 'gradstats\[dask\]'"):
        map_records(_moments, keys, capture=capture, engine="dask")


@pytest.fixture(scope="module")
def dask_cluster():
    """A local cluster of 2 worker processes, as a real cluster has (an in-process worker shares this
    process's BLAS pool), started as `map_records` starts one (this process's environment kept)."""
    pytest.importorskip("distributed")
    with dask_client(None, jobs=2) as client:
        yield client.cluster


def test_dask_returns_the_serial_results_by_address_and_by_client(capture, dask_cluster):
    from distributed import Client

    keys, sizes = _tasks(capture)
    address = dask_cluster.scheduler_address
    serial = map_records(_moments, keys, capture=capture, jobs=1, sizes=sizes)
    by_address = map_records(_moments, keys, capture=capture, engine="dask", sizes=sizes, scheduler=address)
    with Client(dask_cluster) as client:
        by_client = map_records(_moments, keys, capture=capture, engine="dask", scheduler=client)
        assert client.status == "running"  # a client handed in is left open
    assert by_address == serial and by_client == serial  # values, and one torch and one BLAS thread
    with pytest.raises(ValueError, match=r"record \([012], 'mid.weight'\) is bad"):
        map_records(_fails_on_mid, keys, capture=capture, engine="dask", scheduler=address)


def test_dask_fit_and_code_tables_equal_the_serial_ones(capture, dask_cluster):
    from coders.report import code_capture
    from gradstats import fit_capture

    address = dask_cluster.scheduler_address
    fams = ["normal", "laplace", "gennorm", "zi-gennorm"]
    a = fit_capture(capture, families=fams, jobs=1, progress=False)
    b = fit_capture(capture, families=fams, engine="dask", scheduler=address, progress=False)
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"), check_exact=True)
    timing = ["encode_MBps", "decode_MBps", "encode_Meps", "decode_Meps", "quantize_s", "model_s"]
    x = code_capture(capture, models=["histogram", "laplace", "gennorm"], coders=["ans", "huffman"], jobs=1)
    y = code_capture(capture, models=["histogram", "laplace", "gennorm"], coders=["ans", "huffman"],
                     engine="dask", scheduler=address)
    pd.testing.assert_frame_equal(x.drop(columns=timing), y.drop(columns=timing), check_exact=True)
    with pytest.raises(ValueError, match="unknown engine 'spark'"):
        fit_capture(capture, engine="spark", progress=False)
    with pytest.raises(ValueError, match="unknown engine 'spark'"):
        code_capture(capture, engine="spark")


@pytest.mark.slow
def test_dask_local_cluster_of_worker_processes(capture):
    """scheduler=None: a LocalCluster of `jobs` worker processes, started and closed for the call."""
    pytest.importorskip("distributed")
    keys, sizes = _tasks(capture)
    serial = map_records(_moments, keys, capture=capture, jobs=1, sizes=sizes)
    got = map_records(_moments, keys, capture=capture, engine="dask", jobs=2, sizes=sizes)
    assert [r[:4] for r in got] == [r[:4] for r in serial]
    assert {(r[4], r[5]) for r in got} == {(1, 1)}  # the nanny's OMP / OPENBLAS_NUM_THREADS=1
    before = dict(os.environ)
    with dask_client(None, jobs=1) as client:
        assert len(client.scheduler_info()["workers"]) == 1
        pid = client.submit(os.getpid).result()
        # glibc's trim threshold left at its default in the worker; this process's environment untouched
        assert client.submit(_environ, "MALLOC_TRIM_THRESHOLD_").result() is None
        assert client.submit(_environ, "OPENBLAS_NUM_THREADS").result() == "1"
        assert dict(os.environ) == before
    assert pid != os.getpid()


def _environ(name):
    return os.environ.get(name)


@pytest.mark.slow
def test_a_device_run_spawns_its_workers_and_gives_the_serial_results(capture):
    """device != 'cpu': a CUDA context does not survive a fork, so the pool spawns fresh interpreters
    (here with a CPU-only function, so that the path is tested without a GPU)."""
    keys, sizes = _tasks(capture)
    serial = map_records(_moments, keys, capture=capture, jobs=1, sizes=sizes)
    assert map_records(_moments, keys, capture=capture, jobs=2, sizes=sizes, device="cuda") == serial
    _MARK.append(1)
    try:
        forked = map_records(_marked, keys, capture=capture, jobs=2, sizes=[1 << 20] * len(keys))
        spawned = map_records(_marked, keys, capture=capture, jobs=2, sizes=[1 << 20] * len(keys),
                              device="cuda")
    finally:
        _MARK.clear()
    assert {m for _, m in forked} == {1} and {m for _, m in spawned} == {0}
