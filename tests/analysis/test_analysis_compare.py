"""Per-method summaries of training histories and the end-to-end comparison (analysis.compare)."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis.compare import (
    MethodRun,
    Network,
    can_overlap,
    history_frame,
    parameter_server_time,
    ring_allreduce_time,
    steps_to_target,
    summarize_runs,
)

# 10 Gbit/s and 5 us: alpha = 5e-6 s, B = 1e10 bit/s
NET = Network(bandwidth_gbps=10.0, latency_us=5.0)


def test_can_overlap():
    assert can_overlap("bf16", "allreduce")
    assert can_overlap("powergossip", "p2p")
    assert not can_overlap("mcm", "ps")
    assert can_overlap("signum-mv", "ps")
    with pytest.raises(ValueError, match="pattern"):
        can_overlap("x", "bus")


def _history(bits_up, bits_down, metric_rate, steps=100, every=10, codec=0.0):
    rows = []
    for s in range(1, steps + 1):
        m = 1 - math.exp(-metric_rate * s) if s % every == 0 else np.nan
        rows.append({"step": s, "loss": 1.0 / s, "metric": m, "bits_up": bits_up, "bits_down": bits_down,
                     "bits_wire": bits_up, "compress_s": codec / 2, "decompress_s": codec / 2, "step_s": 0.1})
    return pd.DataFrame(rows)


def test_steps_to_target():
    h = _history(1, 1, 0.05)
    # 1 - exp(-0.05 s) >= 0.9  <=>  s >= 46.05; evaluated every 10 steps -> 50
    assert steps_to_target(h, 0.9) == 50
    assert math.isnan(steps_to_target(h, 0.999))
    # lower is better: -(1 - exp(-0.05 s)) <= -0.5 first at s = 13.9 -> 20
    assert steps_to_target(h.assign(metric=-h["metric"]), -0.5, higher_is_better=False) == 20


def test_summarize_runs_hand_computed():
    d = 1_000_000
    runs = [
        MethodRun("bf16", _history(16 * d, 16 * d, 0.05), "allreduce", True, 8),
        MethodRun("signum-mv", _history(d, d, 0.03, codec=0.002), "ps", False, 8),
        MethodRun("mcm", _history(d, d, 0.03, codec=0.002), "ps", False, 8),
        MethodRun("powergossip", _history(2 * 64_000, 0, 0.03), "p2p", False, 8, degree=2),
    ]
    s = summarize_runs(runs, NET, compute_s=0.03).set_index("method")
    # target = 0.95 * bf16 final = 0.95 * (1 - exp(-5))
    target = 0.95 * (1 - math.exp(-5.0))
    assert s["target"].iloc[0] == pytest.approx(target)
    comm_bf16 = 2 * 7 * 5e-6 + 2 * 7 / 8 * 16e6 / 1e10
    assert s.loc["bf16", "comm_s"] == pytest.approx(comm_bf16)
    assert s.loc["bf16", "iter_s"] == pytest.approx(0.03 + comm_bf16)
    assert s.loc["bf16", "iter_overlap_s"] == pytest.approx(0.01 + max(0.02, comm_bf16))
    comm_ps = 2 * 5e-6 + 8 * 2e6 / 1e10
    assert s.loc["mcm", "iter_overlap_s"] == pytest.approx(0.03 + 0.002 + comm_ps)  # no overlap
    assert s.loc["signum-mv", "iter_overlap_s"] == pytest.approx(0.01 + max(0.02, comm_ps) + 0.002)
    assert s.loc["powergossip", "comm_s"] == pytest.approx(5e-6 + 2 * 64_000 / 1e10)
    assert s.loc["bf16", "up_ratio_vs_bf16"] == pytest.approx(1.0)
    assert s.loc["mcm", "up_ratio_vs_bf16"] == pytest.approx(16.0)
    assert s.loc["bf16", "steps_to_target"] == 60  # 1-exp(-0.05 s) >= 0.94 at s = 56.2 -> 60
    assert s.loc["bf16", "time_to_target_s"] == pytest.approx(60 * s.loc["bf16", "iter_overlap_s"])
    assert s.loc["bf16", "speedup_vs_bf16"] == pytest.approx(1.0)
    h = history_frame(runs, s.reset_index())
    assert set(h["method"]) == {r.method for r in runs}
    g = h[h["method"] == "bf16"]
    assert g["time_s"].iloc[-1] == pytest.approx(100 * s.loc["bf16", "iter_overlap_s"])
    assert g["bits_up_cum"].iloc[-1] == pytest.approx(100 * 16 * d)


def test_summarize_runs_rejects_bad_history():
    with pytest.raises(ValueError, match="lacks columns"):
        summarize_runs([MethodRun("bf16", pd.DataFrame({"step": [1]}), "allreduce", True, 2)], NET, 0.01)
    with pytest.raises(ValueError, match="at least one"):
        summarize_runs([], NET, 0.01)


def test_bandwidth_sweep_reprices_summary():
    from analysis.compare import bandwidth_sweep

    d = 1_000_000
    runs = [MethodRun("bf16", _history(16 * d, 16 * d, 0.05), "allreduce", True, 8),
            MethodRun("mcm", _history(d, d, 0.03, codec=0.002), "ps", False, 8)]
    s = summarize_runs(runs, NET, compute_s=0.03)
    sw = bandwidth_sweep(s, bandwidths_gbps=(1.0, 10.0)).set_index(["method", "bandwidth_gbps"])
    # at the summary's own network the sweep reproduces the summary
    assert sw.loc[("bf16", 10.0), "iter_overlap_s"] == pytest.approx(s.set_index("method").loc["bf16",
                                                                                             "iter_overlap_s"])
    slow = Network(1.0, 5.0)
    comm = ring_allreduce_time(16e6, 8, slow)
    assert sw.loc[("bf16", 1.0), "iter_overlap_s"] == pytest.approx(0.01 + max(0.02, comm))
    ps = parameter_server_time(1e6, 1e6, 8, slow)
    assert sw.loc[("mcm", 1.0), "iter_overlap_s"] == pytest.approx(0.03 + 0.002 + ps)
    assert sw.loc[("mcm", 1.0), "speedup_vs_bf16"] == pytest.approx((0.01 + max(0.02, comm)) / (0.032 + ps))


def test_codec_time_is_the_median_over_steps():
    h = _history(1e6, 1e6, 0.05, codec=0.002)
    h.loc[3, "compress_s"] = 5.0  # one preempted step
    s = summarize_runs([MethodRun("bf16", h, "allreduce", True, 8)], NET, compute_s=0.03).iloc[0]
    assert s["compress_s"] == pytest.approx(0.001) and s["decompress_s"] == pytest.approx(0.001)


ISSUE_METHODS = ("bf16", "powersgd", "signum-mv", "s3gd-mv", "mcm", "powergossip")


def test_optimizer_of_states_each_methods_rule():
    from analysis.compare import optimizer_of

    got = {m: optimizer_of(m) for m in ISSUE_METHODS}
    assert got == {
        "bf16": "SGD, momentum 0.9",
        "powersgd": "Nesterov SGD, momentum 0.9",
        "signum-mv": "Signum, momentum 0.9 before the sign",
        "s3gd-mv": "SGD (no momentum)",
        "mcm": "server SGD, momentum 0.9",
        "powergossip": "local Nesterov SGD, momentum 0.9",  # the gossip reference's local optimizer
    }
    assert optimizer_of("signsgd-mv") == "signSGD (no momentum)"
    # options override the class defaults; Nesterov needs momentum
    assert optimizer_of("powergossip", {"nesterov": False}) == "local SGD, momentum 0.9"
    assert optimizer_of("bf16", {"momentum": 0.0, "nesterov": True}) == "SGD (no momentum)"
    assert optimizer_of("signum-mv", {"beta": 0.5, "weight_decay": 1e-4}) == (
        "Signum, momentum 0.5 before the sign, weight decay 0.0001")
    with pytest.raises(ValueError, match="unknown method"):
        optimizer_of("adamw")


def test_compare_adds_the_bf16_baseline_and_states_optimizer_and_lr():
    from analysis.compare import compare

    c = compare("mlp", ["randk"], workers=2, steps=2, eval_every=1, lrs={"randk": 0.02})
    s = c.summary.set_index("method")
    assert list(s.index) == ["bf16", "randk"]  # the baseline is trained although not asked for
    assert (s["baseline"] == "bf16").all() and s.loc["randk", "up_ratio_vs_bf16"] > 1
    assert s.loc["randk", "lr"] == 0.02 and s.loc["randk", "optimizer"] == "SGD, momentum 0.9"
    assert (s["eval_every"] == 1).all()
    # rand-k with a shared seed sums index-aligned values: all-reduce compatible like bf16
    assert s.loc["bf16", "allreduce_compatible"] and s.loc["randk", "allreduce_compatible"]
    with pytest.raises(ValueError, match="16-bit"):
        compare("mlp", ["randk"], workers=2, steps=1, baseline="fp32")
    with pytest.raises(ValueError, match="twice"):
        compare("mlp", ["randk", "randk"], workers=2, steps=1)


def test_summary_time_to_target_is_nan_when_never_reached():
    from analysis.tables import NOT_REACHED, compare_table

    runs = [MethodRun("bf16", _history(16, 16, 0.05), "allreduce", True, 4),
            MethodRun("slow", _history(1, 1, 0.001), "ps", False, 4)]
    s = summarize_runs(runs, NET, compute_s=0.01)
    slow = s.set_index("method").loc["slow"]
    assert slow["final_metric"] < slow["target"]
    assert math.isnan(slow["steps_to_target"]) and math.isnan(slow["time_to_target_s"])
    t = compare_table(s).set_index("method")
    assert t.loc["slow", "steps_to_target"] == t.loc["slow", "time_to_target_s"] == NOT_REACHED
    assert t.loc["bf16", "steps_to_target"] == "60"  # 1 - exp(-0.05 s) >= 0.95 * 0.993 first at 60
    with pytest.raises(ValueError, match="method"):
        compare_table(s.drop(columns=["method"]))
