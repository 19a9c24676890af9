"""The Comm verbs in the thread simulator and on gloo give the same, hand-checked results."""

from __future__ import annotations

import threading

import pytest
import torch
from communication_workers import collectives

from coders.communication.comm import Comm, ThreadComm, run_processes, run_threads


def _check(results: list[dict], w: int) -> None:
    for r, out in enumerate(results):
        torch.testing.assert_close(out["sum"], torch.arange(5, dtype=torch.float32) * sum(range(1, w + 1)),
                                   rtol=0, atol=0)
        assert out["sum_bf16"].dtype == torch.bfloat16
        torch.testing.assert_close(out["sum_bf16"].float(), torch.full((3,), 0.5 * sum(range(1, w + 1))))
        assert [g.shape for g in out["gather"]] == [(1, k + 1) for k in range(w)]
        for k, g in enumerate(out["gather"]):
            assert g.dtype == torch.int64
            assert g.flatten().tolist() == [10 * k + j for j in range(k + 1)]
        assert [g.tolist() for g in out["gather_bool"]] == [[k % 2 == 0, True] for k in range(w)]
        assert out["gather_bool"][0].dtype == torch.bool
        assert [g.numel() for g in out["gather_empty"]] == [0] + [2] * (w - 1)
        torch.testing.assert_close(out["bcast"], torch.full((2, 2), float(w - 1)))
        nxt, prv = (r + 1) % w, (r - 1) % w
        ex = out["exchange"]
        assert set(ex) == {nxt, prv}
        if w > 2:
            # rank r receives from r+1 what r+1 sent "backwards" (-(r+1)), from r-1 what it sent forwards.
            torch.testing.assert_close(ex[nxt], torch.full((3,), float(-nxt)))
            torch.testing.assert_close(ex[prv], torch.full((3,), float(prv)))


@pytest.mark.parametrize("w", [1, 3, 4])
def test_thread_comm_collectives(w):
    if w == 1:
        # a ring of one has no peers; check the collectives without exchange
        res = run_threads(1, lambda c: (c.all_reduce(torch.ones(2)), c.all_gather(torch.ones(3))))
        torch.testing.assert_close(res[0][0], torch.ones(2))
        assert len(res[0][1]) == 1
        return
    _check(run_threads(w, collectives), w)


def test_thread_comm_is_a_comm_and_returns_new_tensors():
    def fn(c: ThreadComm):
        assert isinstance(c, Comm)
        t = torch.ones(3)
        s = c.all_reduce(t)
        s += 100  # must not leak into another rank's result or the input
        return t, s

    res = run_threads(2, fn)
    for t, s in res:
        torch.testing.assert_close(t, torch.ones(3))
        torch.testing.assert_close(s, torch.full((3,), 102.0))


def test_thread_sum_is_rank_ordered_and_identical_everywhere():
    # float32 addition is not associative: rank order must be used by every rank.
    vals = [1e8, 1.0, -1e8, 1.0]

    def fn(c):
        return c.all_reduce(torch.tensor([vals[c.rank]], dtype=torch.float32))

    res = run_threads(4, fn)
    expected = torch.tensor([vals[0]], dtype=torch.float32)
    for v in vals[1:]:
        expected = expected + torch.tensor([v], dtype=torch.float32)
    for r in res:
        assert r.item() == expected.item()


def test_run_threads_reraises_the_worker_error():
    def fn(c):
        if c.rank == 1:
            raise KeyError("boom on rank 1")
        c.barrier()  # rank 0 would wait forever without the abort
        return c.rank

    with pytest.raises(KeyError, match="boom on rank 1"):
        run_threads(2, fn)


def test_thread_exchange_errors_name_the_problem():
    with pytest.raises(ValueError, match="itself"):
        run_threads(2, lambda c: c.exchange({c.rank: torch.ones(1)}))
    with pytest.raises(ValueError, match="not a rank"):
        run_threads(2, lambda c: c.exchange({5: torch.ones(1)}))
    with pytest.raises(ValueError, match="symmetric"):
        run_threads(2, lambda c: c.exchange({1 - c.rank: torch.ones(c.rank + 1)}))
    with pytest.raises(ValueError, match="sent nothing back"):
        run_threads(3, lambda c: c.exchange({1: torch.ones(1)} if c.rank == 0 else {}))
    with pytest.raises(ValueError, match="different shapes"):
        run_threads(2, lambda c: c.all_reduce(torch.ones(c.rank + 1)))


def test_thread_barrier_really_synchronizes():
    order = []
    lock = threading.Lock()

    def fn(c):
        with lock:
            order.append(("before", c.rank))
        c.barrier()
        with lock:
            order.append(("after", c.rank))

    run_threads(3, fn)
    assert [k for k, _ in order[:3]] == ["before"] * 3


@pytest.mark.distributed
def test_gloo_collectives_match_the_simulator():
    w = 3
    _check(run_processes(w, collectives, backend="gloo"), w)


@pytest.mark.distributed
def test_gloo_failure_carries_the_traceback():
    with pytest.raises(RuntimeError, match="rank 0 failed"):
        run_processes(1, collectives_bad)


def collectives_bad(comm):
    if comm.rank == 0:
        raise ValueError("bad input on rank 0")
    return 1
