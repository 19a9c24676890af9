"""Modelled step times for the workload and projected model sizes (analysis.step_time), by hand."""

import numpy as np
import pandas as pd
import pytest

from analysis.network import Network, iteration_time, parameter_server_time, ring_allreduce_time
from analysis.step_time import params_label, parse_params, step_times


def _summary():
    return pd.DataFrame([
        {"workload": "w", "method": "bf16", "pattern": "allreduce", "workers": 4, "degree": np.nan,
         "bits_up": 16e3, "bits_down": 16e3, "compute_s": 0.01, "can_overlap": True, "latency_us": 5.0,
         "params": 1000},
        {"workload": "w", "method": "mcm", "pattern": "ps", "workers": 4, "degree": np.nan,
         "bits_up": 2e3, "bits_down": 3e3, "compute_s": 0.01, "can_overlap": False, "latency_us": 5.0,
         "params": 1000},
    ])


def _codec():
    return pd.DataFrame([
        {"method": m, "layer": layer, "entries": n, "codec_ms": ms, "bits_up": up * n, "bits_down": down * n}
        for m, up, down, ms_w, ms_big in (("bf16", 16, 16, 0.1, 2.0), ("mcm", 2, 3, 1.0, 40.0))
        for layer, n, ms in (("workload", 1000, ms_w), ("64x64", 4096, 0.0), ("1000x1000", 10**6, ms_big))])


def test_workload_row_uses_measured_bits_and_isolated_codec():
    t = step_times(_summary(), _codec(), bandwidths_gbps=(1.0,)).set_index(["method", "model"])
    net = Network(1.0, 5.0)
    bf16 = t.loc[("bf16", "w (1k)")]
    assert bf16["codec_s"] == pytest.approx(1e-4)
    assert bf16["comm_s"] == pytest.approx(ring_allreduce_time(16e3, 4, net))
    assert bf16["iter_overlap_s"] == pytest.approx(iteration_time(0.01, 1e-4, bf16["comm_s"], overlap=True))
    mcm = t.loc[("mcm", "w (1k)")]
    assert mcm["comm_s"] == pytest.approx(parameter_server_time(2e3, 3e3, 4, net))
    assert mcm["iter_overlap_s"] == pytest.approx(0.01 + 1e-3 + mcm["comm_s"])  # no overlap
    assert mcm["speedup_vs_bf16"] == pytest.approx(bf16["iter_overlap_s"] / mcm["iter_overlap_s"])


def test_projection_scales_per_entry_costs_of_the_largest_layer():
    p = 124_000_000
    t = step_times(_summary(), _codec(), model_params=[p], bandwidths_gbps=(10.0, 100.0))
    at = (t["method"] == "mcm") & (t["model"] == "124M projection") & (t["bandwidth_gbps"] == 10.0)
    row = t[at].iloc[0]
    assert row["bits_up"] == pytest.approx(2 * p) and row["bits_down"] == pytest.approx(3 * p)
    assert row["codec_s"] == pytest.approx(40e-3 * p / 1e6)  # 40 ms per 1M entries
    assert row["compute_s"] == pytest.approx(0.01 * p / 1000)  # compute linear in the parameter count
    assert row["comm_s"] == pytest.approx(parameter_server_time(2 * p, 3 * p, 4, Network(10.0, 5.0)))
    assert set(t["model"]) == {"w (1k)", "124M projection"} and len(t) == 2 * 2 * 2
    with pytest.raises(ValueError, match="lacks columns"):
        step_times(_summary().drop(columns=["params"]), _codec())


def test_parse_and_label_parameter_counts():
    assert parse_params("124M") == 124_000_000 and parse_params("1.5B") == 1_500_000_000
    assert parse_params("38k") == 38_000 and parse_params(2e6) == 2_000_000
    assert params_label(124e6) == "124M" and params_label(1.5e9) == "1.5B" and params_label(38282) == "38.3k"
    with pytest.raises(ValueError, match="124M"):
        parse_params("lots")
    with pytest.raises(ValueError, match="positive"):
        parse_params("0")
