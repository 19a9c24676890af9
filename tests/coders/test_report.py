"""bits_per_entry / code_capture / `gradstats code`: columns, sums, limits, totals vs bf16."""

import math

import numpy as np
import pandas as pd
import pytest

from coders import bits_per_entry, code_capture, code_length, histogram_model
from coders.models import empirical_entropy
from coders.quantizers import UniformQuantizer
from coders.report import TOTAL, family_comparison

CONTRACT = ["model", "coder", "payload_bits_per_entry", "side_bits_per_entry", "bits_per_entry", "entropy",
            "cross_entropy", "gap_entropy", "gap_cross_entropy", "encode_MBps", "decode_MBps"]


@pytest.fixture(scope="module")
def gennorm_x():
    fam = pytest.importorskip("gradstats.families")
    return fam.GenNorm(beta=0.7, scale=1e-3).sample(60_000, rng=0).astype(np.float32)


def test_bits_per_entry_rows_and_identities(gennorm_x):
    q = UniformQuantizer(scale_mult=0.5)
    df = bits_per_entry(gennorm_x, q, models=["histogram", "laplace", "gennorm"],
                        coders=["ans", "range", "huffman", "zstd-3"], raw_baselines=True)
    assert set(CONTRACT) <= set(df.columns)
    assert len(df) == 3 * 3 + 1 + 4
    s = q.quantize(gennorm_x).symbols
    h = empirical_entropy(s)
    coded = df[df["model"].isin(["histogram", "laplace", "gennorm"])]
    np.testing.assert_allclose(coded["entropy"], h)
    bpe = coded["bits_per_entry"]
    np.testing.assert_allclose(coded["payload_bits_per_entry"] + coded["side_bits_per_entry"], bpe)
    np.testing.assert_allclose(coded["gap_entropy"], bpe / h - 1)
    np.testing.assert_allclose(coded["gap_cross_entropy"], bpe / coded["cross_entropy"] - 1)
    assert (coded["encode_MBps"] > 0).all() and (coded["decode_MBps"] > 0).all()
    # payload bits are the coder's own count
    hist = df[(df["model"] == "histogram") & (df["coder"] == "ans")].iloc[0]
    m = histogram_model(s)
    assert hist["payload_bits"] == code_length(s, m, "ans", include_side=False)
    assert hist["side_bits"] == m.side_bits
    # ANS is at the model's limit; GenNorm's codebook is near the oracle and beats Laplace
    for model in ("histogram", "gennorm"):
        r = df[(df["model"] == model) & (df["coder"] == "ans")].iloc[0]
        assert abs(r["gap_cross_entropy"]) < 0.005 and r["gap_entropy"] < 0.01
    by = df[df["coder"] == "ans"].set_index("model")["bits_per_entry"]
    assert by["gennorm"] < by["laplace"]
    raw = df[df["model"].str.startswith("raw-")]
    assert set(raw["coder"]) == {"zstd-3", "zstd-19"} and (raw["bits_per_entry"] > 8).all()
    assert (df["quantizer_side_bits_per_entry"].iloc[0] * len(s)) == 32


def test_failed_fit_is_reported_not_hidden():
    x = np.full(1000, 0.25, np.float32)
    df = bits_per_entry(x, UniformQuantizer(step=0.1), models=["histogram", "gennorm"], coders=["ans"])
    bad = df[df["model"] == "gennorm"].iloc[0]
    assert "one distinct value" in bad["error"] and math.isnan(bad["bits_per_entry"])
    good = df[df["model"] == "histogram"].iloc[0]
    assert good["error"] == "" and good["entropy"] == 0.0
    assert good["payload_bits"] <= 64  # a single symbol costs a state flush, not bits per entry


def test_empty_input_gives_rows_without_rates():
    df = bits_per_entry(np.zeros(0, np.float32), UniformQuantizer(step=1.0), models=["histogram"],
                        coders=["ans", "huffman"])
    assert len(df) == 2 and (df["n"] == 0).all() and df["bits_per_entry"].isna().all()


@pytest.fixture(scope="module")
def capture(tmp_path_factory, gennorm_x):
    captures = pytest.importorskip("captures")
    rng = np.random.default_rng(1)
    grads = {
        step: {"fc.weight": gennorm_x[: 20_000].reshape(100, 200) * (1 + step),
               "fc.bias": rng.laplace(size=100).astype(np.float32)}
        for step in (0, 10)
    }
    path = tmp_path_factory.mktemp("cap") / "capture"
    captures.write_capture(path, grads)
    return path


def test_code_capture_totals_against_bf16(capture):
    models = ["histogram", "normal", "laplace", "gennorm"]
    df = code_capture(capture, models=models, coders=["ans", "huffman"])
    layers = df[df["layer"] != TOTAL]
    assert set(layers["layer"]) == {"fc.weight", "fc.bias"} and set(layers["step"]) == {0, 10}
    tot = df[df["layer"] == TOTAL]
    assert len(tot) == 2 * 4 * 2
    for _, t in tot.iterrows():
        g = layers[(layers["step"] == t["step"]) & (layers["model"] == t["model"])
                   & (layers["coder"] == t["coder"])]
        assert t["n"] == 20_100
        assert t["total_bits"] == pytest.approx(g["total_bits"].sum())
        assert t["total_bits_per_entry"] == pytest.approx(g["total_bits"].sum() / 20_100)
        assert t["ratio_vs_bf16"] == pytest.approx(16 / t["total_bits_per_entry"])
    cmp = family_comparison(layers[layers["step"] == 0], others=("normal", "laplace"))
    w = cmp[cmp["layer"] == "fc.weight"].iloc[0]
    assert w["saving_vs_laplace"] == pytest.approx(1 - w["gennorm"] / w["laplace"])
    assert w["saving_vs_laplace"] > 0 and w["saving_vs_normal"] > w["saving_vs_laplace"]


def test_code_capture_layer_glob_and_errors(capture):
    df = code_capture(capture, models=["histogram"], coders=["ans"], layers="*.bias", steps=[10])
    assert set(df["layer"]) == {"fc.bias", TOTAL} and set(df["step"]) == {10}
    with pytest.raises(ValueError, match="no layer matches"):
        code_capture(capture, layers="conv*")


def test_cli_code_writes_bits(capture, tmp_path, capsys):
    from gradstats.cli import main

    out = tmp_path / "bits.csv"
    rc = main(["code", str(capture), "--models", "histogram,laplace,gennorm", "--coders", "ans",
               "--out", str(out)])
    assert rc == 0
    df = pd.read_csv(out)
    assert {TOTAL, "fc.weight"} <= set(df["layer"])
    text = capsys.readouterr().out
    assert "ratio_vs_bf16" in text and "saving_vs_laplace" in text
