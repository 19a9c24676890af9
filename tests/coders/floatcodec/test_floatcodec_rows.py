"""coders.floatcodec.rows: bits_per_entry's columns, the zstd rows equal to the project's zstd
baseline, and the codec below zstd -19 on the bf16 gradients of the built-in workloads."""

import numpy as np
import pytest
import torch

from coders.entropy import zstd_raw_bits
from coders.floatcodec import encode_float, raw_float_rows
from coders.report import COLUMNS, bits_per_entry


def test_raw_float_rows_columns_and_zstd_baseline():
    rng = np.random.default_rng(6)
    x = rng.laplace(0, 1e-3, 5000).astype(np.float32)
    rows = raw_float_rows(x, zstd_levels=(3, 19))
    assert [(r["model"], r["coder"]) for r in rows] == [
        (m, c) for m in ("raw-bf16", "raw-fp16", "raw-float32") for c in ("planes-ans", "zstd-3", "zstd-19")]
    for r in rows:
        assert set(r) <= set(COLUMNS)
        assert r["bits_per_entry"] == pytest.approx(r["payload_bits_per_entry"] + r["side_bits_per_entry"])
        assert r["total_bits"] == r["payload_bits"] + r["side_bits"]
    by = {(r["model"], r["coder"]): r for r in rows}
    # the zstd rows are the same bytes, framing and levels as the baseline of bits_per_entry
    assert by["raw-bf16", "zstd-19"]["payload_bits"] == zstd_raw_bits(x, "bf16", 19)
    assert by["raw-float32", "zstd-3"]["payload_bits"] == zstd_raw_bits(x, "float32", 3)
    # planes-ans: the whole blob
    assert by["raw-bf16", "planes-ans"]["total_bits"] == 8 * len(encode_float(x, "bf16"))
    # lossless for fp32 (input is fp32), the format's rounding error otherwise
    assert by["raw-float32", "planes-ans"]["mse"] == 0.0
    xb = torch.from_numpy(x).bfloat16().double().numpy()
    assert by["raw-bf16", "planes-ans"]["mse"] == pytest.approx(np.mean((xb - x) ** 2), rel=1e-12)
    # they append to bits_per_entry's frame without new columns
    import pandas as pd

    df = bits_per_entry(x, models=("histogram",), coders=("ans",), raw_baselines=True)
    both = pd.concat([df, pd.DataFrame(rows).reindex(columns=COLUMNS)], ignore_index=True)
    assert list(both.columns) == COLUMNS
    assert by["raw-bf16", "planes-ans"]["bits_per_entry"] < by["raw-bf16", "zstd-19"]["bits_per_entry"]


def test_zstd_rows_span_several_frames():
    """More than one 4 MiB frame: the frames decode back in order and count as zstd_raw_bits does."""
    x = np.random.default_rng(10).laplace(0, 1e-3, 1_100_000).astype(np.float32)  # 4.4 MB of fp32
    rows = raw_float_rows(x, dtypes=("fp32",), zstd_levels=(1,))
    assert rows[1]["payload_bits"] == zstd_raw_bits(x, "float32", 1)


def test_bf16_planes_beat_zstd19_on_every_dense_layer(workload_grads):
    """Every weight tensor (ndim >= 2: conv, linear, embedding) of both workloads, bf16."""
    dense = {k: g for k, g in workload_grads.items() if g.dim() >= 2}
    assert len(dense) >= 15
    for name, g in dense.items():
        rows = raw_float_rows(g, dtypes=("bf16",), zstd_levels=(19,))
        planes, zstd = rows
        assert planes["coder"] == "planes-ans" and zstd["coder"] == "zstd-19"
        assert planes["bits_per_entry"] < zstd["bits_per_entry"], name
