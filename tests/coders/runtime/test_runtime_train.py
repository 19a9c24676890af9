"""The trainer: simulator and gloo give the same model; history columns; CLI; error messages."""

from __future__ import annotations

import math

import pytest
import torch
from runtime_dist_workers import train_many

from coders.communication.comm import run_processes
from coders.runtime.train import HISTORY_COLUMNS, TrainSpec, train

# (method, options): every communication pattern and the methods with randomness or state
SIM_VS_GLOO = [
    ("bf16", {}),
    ("powersgd", {"rank": 1}),
    ("signum-mv", {}),
    ("s3gd-mv", {"sparsity": 0.05}),
    ("ef-signsgd", {}),
    ("qsgd-ef", {"levels": 4}),
    ("randk", {"ratio": 0.3}),
    ("mcm", {"levels": 4}),
    ("rand-mcm", {"levels": 4}),
]


@pytest.mark.distributed
@pytest.mark.slow
def test_simulator_and_gloo_give_the_same_model():
    w, steps = 2, 4
    specs = [TrainSpec("digits-cnn", m, w, steps, seed=3, options=o, eval_every=2) for m, o in SIM_VS_GLOO]
    gloo = run_processes(w, train_many, specs, backend="gloo")
    from captures import make_workload

    model = make_workload("digits-cnn", seed=3).make_model()
    init = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    for i, (method, opts) in enumerate(SIM_VS_GLOO):
        sim = train("digits-cnn", method, w, steps, seed=3, options=opts, eval_every=2)
        for r in range(w):
            torch.testing.assert_close(gloo[r][i]["params"], sim.final_params[r], atol=1e-6, rtol=1e-5,
                                       msg=f"{method}: rank {r} differs between gloo and the simulator")
        assert gloo[0][i]["rows"][-1]["bits_up"] == sim.history["bits_up"].iloc[-1]
        assert gloo[0][i]["rows"][-1]["metric"] == pytest.approx(sim.history["metric"].iloc[-1], abs=1e-6)
        assert not torch.equal(init, sim.final_params[0]), f"{method}: the model did not move"


def test_history_columns_bits_and_eval_schedule():
    res = train("digits-cnn", "topk-ef", 2, 6, seed=0, options={"ratio": 0.05}, eval_every=3)
    h = res.history
    assert list(h["step"]) == list(range(1, 7))
    for c in HISTORY_COLUMNS:
        assert c in h.columns
    assert h["metric"].notna().tolist() == [False, False, True, False, False, True]
    assert 0 <= res.final_metric <= 1 and res.metric_name == "accuracy"
    # per-worker payload: k = ceil(0.05 d_l) per layer, 32-bit values + int32 indices
    from captures import make_workload

    ks = [math.ceil(0.05 * p.numel()) for p in make_workload("digits-cnn").make_model().parameters()]
    assert (h["bits_up"] == 64 * sum(ks)).all()
    assert (h["bits_down"] == h["bits_up"]).all()  # all-gather: one other worker's payload
    assert res.pattern == "allgather" and not res.allreduce_compatible
    assert (h["step_s"] > 0).all() and (h["compress_s"] >= 0).all()
    s = res.summary()
    assert s["method"] == "topk-ef" and s["accuracy"] == res.final_metric


def test_mcm_evaluates_the_central_model():
    res = train("digits-cnn", "mcm", 2, 3, seed=0, options={"levels": 2}, eval_every=3)
    assert not torch.allclose(res.eval_params, res.final_params[0])


def test_train_errors_name_the_problem():
    with pytest.raises(ValueError, match="backend"):
        train("digits-cnn", "fp32", 2, 1, backend="mpi")
    with pytest.raises(ValueError, match="unknown method"):
        train("digits-cnn", "zip", 2, 1)
    with pytest.raises(ValueError, match="centralized"):
        train("digits-cnn", "fp32", 2, 1, topology="ring")
    with pytest.raises(ValueError, match="steps"):
        train("digits-cnn", "fp32", 2, 0)
    with pytest.raises(ValueError, match="lr"):
        train("digits-cnn", "fp32", 2, 1, lr=-1.0)
    with pytest.raises(ValueError, match="nccl"):
        if not torch.cuda.is_available():
            train("digits-cnn", "fp32", 2, 1, backend="nccl")
        else:
            raise ValueError("nccl available; nothing to check")


def test_cli_train_writes_history(tmp_path, capsys):
    import pandas as pd

    from gradstats.cli import main

    out = tmp_path / "h.csv"
    assert main(["train", "--workers", "2", "--method", "topk-ef", "--steps", "4", "--eval-every", "2",
                 "--option", "ratio=0.05", "--out", str(out)]) == 0
    h = pd.read_csv(out)
    assert list(h["step"]) == [1, 2, 3, 4] and h["metric"].notna().sum() == 2
    printed = capsys.readouterr().out
    assert "topk-ef" in printed and "bits_up_per_step" in printed
    with pytest.raises(SystemExit, match="key=value"):
        main(["train", "--option", "ratio"])


@pytest.mark.distributed
@pytest.mark.slow
def test_cli_train_on_gloo_spawns_workers(tmp_path):
    import pandas as pd

    from gradstats.cli import main

    out = tmp_path / "h.parquet"
    assert main(["train", "--workers", "2", "--backend", "gloo", "--method", "powersgd", "--steps", "3",
                 "--option", "rank=1", "--out", str(out)]) == 0
    h = pd.read_parquet(out)
    sim = train("digits-cnn", "powersgd", 2, 3, options={"rank": 1})
    pd.testing.assert_series_equal(h["bits_up"], sim.history["bits_up"])
    assert h["loss"].tolist() == pytest.approx(sim.history["loss"].tolist(), rel=1e-5)


def test_ideal_and_coded_bits_are_means_over_workers(monkeypatch):
    """bits_up_coded / bits_up_ideal are per-worker sizes: the history holds their mean, like bits_up."""
    from coders.algorithms import registry
    from coders.algorithms.base import StepStats
    from coders.algorithms.dense import FP32AllReduce

    class Uneven(FP32AllReduce):
        name = "uneven"  # not registered: the test puts it in the registry for its duration

        def step(self, lr):
            super().step(lr)
            r = float(self.rank)
            return StepStats(10 * (r + 1), 0.0, 0.0, extra={"bits_up_coded": 3 * (r + 1), "bits_up_ideal": r})

    monkeypatch.setitem(registry.METHODS, "uneven", Uneven)
    h = train("digits-cnn", "uneven", 3, 2, seed=0, eval_every=2).history
    assert (h["bits_up"] == 20.0).all()
    assert (h["bits_up_coded"] == 6.0).all() and (h["bits_up_ideal"] == 1.0).all()


class _RecordingBar:
    """A progress factory's bar that records what the trainer asked of it."""

    def __init__(self, opened: list, **kw):
        self.kw, self.n, self.closed = kw, 0, False
        opened.append(self)

    def update(self, n: float = 1) -> None:
        self.n += n

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _factory(opened: list):
    return lambda **kw: _RecordingBar(opened, **kw)


def test_progress_counts_rank0_steps_of_every_spec():
    from coders.runtime.train import train_many as train_specs

    opened: list = []
    train("digits-cnn", "fp32", 3, 4, progress=_factory(opened))
    assert len(opened) == 1 and opened[0].kw == {"total": 4, "desc": "train fp32", "unit": "step"}
    assert opened[0].n == 4 and opened[0].closed  # one update per step of rank 0, not one per worker
    specs = [TrainSpec("digits-cnn", "fp32", 2, 2), TrainSpec("digits-cnn", "bf16", 2, 3)]
    train_specs(specs, progress=_factory(opened))
    assert opened[1].kw["total"] == 5 and opened[1].kw["desc"] == "train" and opened[1].n == 5


def test_unknown_option_fails_before_any_worker_starts(monkeypatch):
    import coders.runtime.train as t

    def no_workers(*a, **k):
        raise AssertionError("a worker started")

    monkeypatch.setattr(t, "run_threads", no_workers)
    monkeypatch.setattr(t, "launch", no_workers)
    opened: list = []
    for backend in ("sim", "gloo"):
        with pytest.raises(ValueError, match=r"'topk-ef' has no option 'nosuch'; its options: .*ratio"):
            train("digits-cnn", "topk-ef", 2, 1, backend=backend, options={"nosuch": 3},
                  progress=_factory(opened))
    assert opened == []  # nor a bar


@pytest.mark.distributed
@pytest.mark.slow
def test_progress_under_gloo_follows_rank0_through_the_launcher():
    from coders.runtime.train import train_many as train_specs

    opened: list = []
    specs = [TrainSpec("digits-cnn", "fp32", 2, 3), TrainSpec("digits-cnn", "bf16", 2, 2)]
    train_specs(specs, backend="gloo", progress=_factory(opened))
    assert opened[0].kw["total"] == 5 and opened[0].n == 5 and opened[0].closed
