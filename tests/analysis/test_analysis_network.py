"""The alpha-beta network model against hand-computed values, and the per-method summary."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis.compare import (
    MethodRun,
    Network,
    can_overlap,
    comm_time,
    history_frame,
    iteration_time,
    p2p_time,
    parameter_server_time,
    ring_allgather_time,
    ring_allreduce_time,
    steps_to_target,
    summarize_runs,
)

# 10 Gbit/s and 5 us: alpha = 5e-6 s, B = 1e10 bit/s
NET = Network(bandwidth_gbps=10.0, latency_us=5.0)


def test_network_units():
    assert NET.alpha == pytest.approx(5e-6)
    assert NET.bits_per_s == pytest.approx(1e10)
    assert "10 Gbit/s" in NET.describe()


def test_ring_allreduce_hand_computed():
    # W = 8, S = 1.6e7 bits (1e6 bf16 entries): 2*7*5e-6 + 2*7/8*1.6e7/1e10 = 7e-5 + 2.8e-3
    assert ring_allreduce_time(1.6e7, 8, NET) == pytest.approx(7e-5 + 2.8e-3, rel=1e-12)
    assert ring_allreduce_time(1.6e7, 1, NET) == 0.0


def test_ring_allgather_hand_computed():
    # W = 4, S = 1e6 bits: 3*5e-6 + 3*1e6/1e10 = 1.5e-5 + 3e-4
    assert ring_allgather_time(1e6, 4, NET) == pytest.approx(3.15e-4, rel=1e-12)


def test_parameter_server_hand_computed():
    # W = 8, up 1e6, down 2e6: 2*5e-6 + 8*3e6/1e10 = 1e-5 + 2.4e-3
    assert parameter_server_time(1e6, 2e6, 8, NET) == pytest.approx(2.41e-3, rel=1e-12)


def test_p2p_hand_computed():
    # ring degree 2, 5e5 bits per neighbour: 5e-6 + 2*5e5/1e10 = 5e-6 + 1e-4
    assert p2p_time(5e5, 2, NET) == pytest.approx(1.05e-4, rel=1e-12)
    # comm_time takes the total sent by the worker and splits it over the neighbours
    assert comm_time("p2p", 1e6, 0.0, 8, NET, degree=2) == pytest.approx(1.05e-4, rel=1e-12)
    assert p2p_time(5e5, 0, NET) == 0.0


def test_allreduce_beats_allgather_for_same_payload():
    # the reason all-reduce compatibility matters: 2(W-1)/W < W-1 for W > 2
    for w in (3, 8, 64):
        assert ring_allreduce_time(1e8, w, NET) < ring_allgather_time(1e8, w, NET)


def test_comm_time_dispatch_and_errors():
    assert comm_time("allreduce", 1e6, 0, 8, NET) == ring_allreduce_time(1e6, 8, NET)
    assert comm_time("allgather", 1e6, 0, 8, NET) == ring_allgather_time(1e6, 8, NET)
    assert comm_time("ps", 1e6, 5e5, 8, NET) == parameter_server_time(1e6, 5e5, 8, NET)
    with pytest.raises(ValueError, match="pattern"):
        comm_time("bus", 1e6, 0, 8, NET)
    with pytest.raises(ValueError, match="degree"):
        comm_time("p2p", 1e6, 0, 8, NET)
    with pytest.raises(ValueError, match="bits"):
        ring_allreduce_time(-1.0, 8, NET)
    with pytest.raises(ValueError, match="workers"):
        ring_allreduce_time(1.0, 0, NET)
    with pytest.raises(ValueError, match="bandwidth"):
        Network(bandwidth_gbps=0.0)
    with pytest.raises(ValueError, match="latency"):
        Network(latency_us=float("nan"))


def test_iteration_time_overlap():
    # compute 0.3 s (fwd 0.1, bwd 0.2), codec 0.01, comm 0.05
    assert iteration_time(0.3, 0.01, 0.05, overlap=False) == pytest.approx(0.36)
    # overlap hides comm under the 0.2 s backward
    assert iteration_time(0.3, 0.01, 0.05, overlap=True) == pytest.approx(0.31)
    # comm longer than backward: fwd + comm + codec
    assert iteration_time(0.3, 0.01, 0.5, overlap=True) == pytest.approx(0.61)
    with pytest.raises(ValueError, match="comm_s"):
        iteration_time(0.3, 0.0, -1.0, overlap=True)


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


def test_aggregate_rd_pools_layers():
    from analysis.compare import aggregate_rd

    rd = pd.DataFrame([
        {"kind": "compressor", "name": "topk", "param": np.nan, "layer": "a", "n": 100, "bits": 400.0,
         "sq_err": 1.0, "sq_norm": 4.0},
        {"kind": "compressor", "name": "topk", "param": np.nan, "layer": "b", "n": 300, "bits": 600.0,
         "sq_err": 0.0, "sq_norm": 12.0},
        {"kind": "quantizer", "name": "u", "param": 0.5, "layer": "a", "n": 100, "bits": 300.0,
         "sq_err": 0.04, "sq_norm": 4.0},
    ])
    agg = aggregate_rd(rd).set_index("name")
    # (400 + 600) bits / 400 entries; sqrt((1 + 0) / (4 + 12))
    assert agg.loc["topk", "bits_per_entry"] == pytest.approx(2.5)
    assert agg.loc["topk", "rel_error"] == pytest.approx(0.25)
    assert np.isnan(agg.loc["topk", "param"]) and agg.loc["u", "param"] == 0.5
    assert agg.loc["u", "rel_error"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="lacks columns"):
        aggregate_rd(rd.drop(columns=["sq_err"]))


def test_rate_distortion_on_real_operators():
    import torch

    from analysis.compare import rate_distortion

    g = torch.Generator().manual_seed(0)
    x = {"w": torch.randn(64, 32, generator=g) * 1e-3, "zero": torch.zeros(8)}
    rd = rate_distortion(x, compressors=(("bf16", "bf16", {}), ("top-k 10%", "topk", {"ratio": 0.1}),
                                         ("PowerSGD rank 1", "lowrank", {"rank": 1})),
                         step_mults=(1.0, 0.25, 0.05), models=("gennorm",))
    assert set(rd["layer"]) == {"w"}  # the all-zero layer has no relative error and is skipped
    r = rd.set_index("name")
    assert r.loc["bf16", "bits_per_entry"] == 16 and r.loc["bf16", "rel_error"] < 2**-8
    # top-k: 205 values (fp32) + 205 int32 indices of 2048 entries
    k = 205
    assert r.loc["top-k 10%", "bits"] == k * 64
    xs = x["w"].reshape(-1).double()
    kept = xs.abs().topk(k).values
    expect = ((xs.pow(2).sum() - kept.pow(2).sum()) / xs.pow(2).sum()).sqrt()
    assert r.loc["top-k 10%", "rel_error"] == pytest.approx(float(expect), rel=1e-5)
    # rank 1 of a 64 x 32 matrix: two fp32 factors
    assert r.loc["PowerSGD rank 1", "bits"] == 32 * (64 + 32)
    q = rd[rd["kind"] == "quantizer"].sort_values("param")
    # finer steps: more bits, less error; the error of step c * RMS is about c / sqrt(12)
    assert q["bits_per_entry"].is_monotonic_decreasing and q["rel_error"].is_monotonic_increasing
    assert q.iloc[0]["rel_error"] == pytest.approx(0.05 / np.sqrt(12), rel=0.1)
    with pytest.raises(ValueError, match="at least one"):
        rate_distortion({})


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
    from analysis.report import NOT_REACHED, compare_table

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


def test_rate_distortion_prices_exact_zeros_with_zi_gennorm():
    import torch

    from analysis.compare import RD_MODELS, rate_distortion

    assert "zi-gennorm" in RD_MODELS  # the default: real layers hold exact zeros
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 64, generator=g) * 1e-3
    x[torch.rand(64, 64, generator=g) < 0.4] = 0.0  # dead units
    rd = rate_distortion({"w": x}, compressors=(), step_mults=(0.5,))
    bpe = rd.set_index("name")["bits_per_entry"]
    assert set(bpe.index) == {f"uniform + {m}/ans" for m in RD_MODELS}
    # the zero atom costs a continuous model bits; the zero-inflated one codes it at its frequency
    assert bpe["uniform + zi-gennorm/ans"] < bpe["uniform + gennorm/ans"] - 0.1
