"""Rate-distortion of compressors and quantizer + codebooks (analysis.rate_distortion)."""

import numpy as np
import pandas as pd
import pytest


def test_aggregate_rd_pools_layers():
    from analysis.rate_distortion import aggregate_rd

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

    from analysis.rate_distortion import rate_distortion

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


def test_rate_distortion_prices_exact_zeros_with_zi_gennorm():
    import torch

    from analysis.rate_distortion import RD_MODELS, rate_distortion

    assert "zi-gennorm" in RD_MODELS  # the default: real layers hold exact zeros
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 64, generator=g) * 1e-3
    x[torch.rand(64, 64, generator=g) < 0.4] = 0.0  # dead units
    rd = rate_distortion({"w": x}, compressors=(), step_mults=(0.5,), coded_step_mults=(), lossless=())
    bpe = rd.set_index("name")["bits_per_entry"]
    assert set(bpe.index) == {f"uniform + {m}/ans" for m in RD_MODELS}
    # the zero atom costs a continuous model bits; the zero-inflated one codes it at its frequency.
    # (The code-length fit of plain GenNorm already bends its peak toward the atom: the gap is ~0.098
    # bits here, where the continuous MLE's was larger.)
    assert bpe["uniform + zi-gennorm/ans"] < bpe["uniform + gennorm/ans"] - 0.05


def test_rate_distortion_has_coded_sgd_bytes_and_lossless_floats():
    import torch

    from analysis.rate_distortion import rate_distortion
    from coders.compressors.entropy_coded import EntropyCodec
    from coders.floatcodec import encode_float

    g = torch.Generator().manual_seed(3)
    x = torch.randn(128, 96, generator=g) * 1e-3
    x[torch.rand(128, 96, generator=g) < 0.3] = 0.0
    rd = rate_distortion({"w": x}, compressors=(), step_mults=(0.5,), models=("zi-gennorm",),
                         coded_step_mults=(0.5,))
    coded = rd[rd["kind"] == "coded"].iloc[0]
    codec = EntropyCodec("uniform", scale_mult=0.5, block_size=4096, model="zi-gennorm", coder="ans")
    msg, xhat, _ = codec.encode(x.reshape(-1), codec.sender(0))
    assert coded["bits"] == 8 * msg.numel()  # the bytes the method puts on the wire
    d = x.reshape(-1).double() - xhat.double()
    assert coded["rel_error"] == pytest.approx(float(d.norm() / x.double().norm()), rel=1e-9)
    # the coded message costs within a few percent of the same quantizer's codebook row
    quant = rd[rd["kind"] == "quantizer"].iloc[0]
    assert abs(coded["bits_per_entry"] / quant["bits_per_entry"] - 1) < 0.05
    lossless = rd[rd["kind"] == "lossless"].set_index("name")
    fp32, bf16 = lossless.loc["lossless fp32 (planes-ans)"], lossless.loc["lossless bf16 (planes-ans)"]
    assert fp32["rel_error"] == 0.0 and fp32["bits"] == 8 * len(encode_float(x, "fp32"))
    rounded = x.to(torch.bfloat16).double()
    want = float((x.double() - rounded).norm() / x.double().norm())
    assert bf16["rel_error"] == pytest.approx(want, rel=1e-9)
    assert bf16["bits_per_entry"] < 16
