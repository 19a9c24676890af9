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


def test_aggregate_seeds_means_spread_and_reached():
    from analysis.compare import aggregate_seeds

    runs = {s: [MethodRun("bf16", _history(16, 16, 0.05 + 0.01 * s), "allreduce", True, 4),
                MethodRun("slow", _history(1, 1, 0.02 + 0.02 * s), "ps", False, 4)] for s in (0, 1, 2)}
    per_seed = pd.concat([summarize_runs(r, NET, compute_s=0.01, target=0.9).assign(seed=s)
                          for s, r in runs.items()], ignore_index=True)
    a = aggregate_seeds(per_seed).set_index("method")
    finals = per_seed[per_seed["method"] == "slow"]["final_metric"]
    assert a.loc["slow", "seeds"] == 3
    assert a.loc["slow", "final_metric"] == pytest.approx(finals.mean())
    assert a.loc["slow", "final_metric_std"] == pytest.approx(finals.std(ddof=1))
    assert a.loc["slow", "final_metric_min"] == finals.min()
    assert a.loc["slow", "final_metric_max"] == finals.max()
    # slow: 1 - exp(-r s) >= 0.9 at s >= 2.3 / r: never for r = 0.02 (s <= 100), at 60 for 0.04, 40 for 0.06
    assert a.loc["slow", "reached_seeds"] == 2 and a.loc["slow", "steps_to_target"] == pytest.approx(50.0)
    assert a.loc["slow", "time_to_target_s"] == pytest.approx(50.0 * a.loc["slow", "iter_overlap_s"])
    assert a.loc["bf16", "up_ratio_vs_bf16"] == 1.0
    assert a.loc["slow", "up_ratio_vs_bf16"] == pytest.approx(16.0)
    assert a.loc["slow", "workers"] == 4 and a.loc["slow", "pattern"] == "ps"  # settings, not averaged
    with pytest.raises(ValueError, match="seed"):
        aggregate_seeds(per_seed.drop(columns=["seed"]))


def test_compare_over_seeds_targets_the_baseline_mean_and_charges_isolated_codec(tmp_path):
    from analysis.compare import Comparison, compare

    c = compare("mlp", ["randk"], workers=2, steps=3, eval_every=3, seeds=[0, 1], model_params=[10**6],
                codec_shapes=((16, 16),), codec_steps=2, codec_warmup=1)
    s = c.summary.set_index("method")
    assert (s["seeds"] == 2).all() and s.loc["bf16", "seed_list"] == "0,1"
    base = c.per_seed[c.per_seed["method"] == "bf16"]["final_metric"]
    assert s.loc["bf16", "target"] == pytest.approx(0.95 * base.mean())
    assert s.loc["bf16", "final_metric"] == pytest.approx(base.mean())
    # the codec time charged is the isolated one (codec table, workload row), not the in-run timers
    own = c.codec[c.codec["layer"] == "workload"].set_index("method")
    assert s.loc["randk", "compress_s"] == pytest.approx(own.loc["randk", "compress_ms"] / 1e3)
    assert set(c.history["seed"]) == {0, 1} and len(c.history) == 2 * 2 * 3
    assert set(c.step_times["model"]) == {"mlp (17.2k)", "1M projection"} and s.loc["bf16", "params"] == 17226
    both = Comparison.concat([c, c])
    assert len(both.summary) == 4 and both.compute_s == {"mlp": c.compute_s}
    paths = both.save(tmp_path)
    for key in ("per_seed", "codec", "step_times"):
        assert paths[key].exists()
    with pytest.raises(ValueError, match="seeds"):
        compare("mlp", ["randk"], workers=2, steps=1, seeds=[0, 0])
