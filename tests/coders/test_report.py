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
    # 3 models x 3 coders, zstd on the symbols, zstd-3/19 on raw fp32 and bf16, the plane codec of 3 formats
    assert len(df) == 3 * 3 + 1 + 4 + 3
    planes = df[df["coder"] == "planes-ans"].set_index("model")
    assert set(planes.index) == {"raw-bf16", "raw-fp16", "raw-float32"}
    from coders.floatcodec import encode_float

    for model, fmt in (("raw-bf16", "bf16"), ("raw-fp16", "fp16"), ("raw-float32", "fp32")):
        # the row's bits are the blob's: 8 x its bytes
        assert planes.loc[model, "bits_per_entry"] * gennorm_x.size == 8 * len(encode_float(gennorm_x, fmt))
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
    assert set(raw["coder"]) == {"zstd-3", "zstd-19", "planes-ans"} and (raw["bits_per_entry"] > 8).all()
    # the plane codec beats zstd on the same bf16 bytes of dense GenNorm-like values
    bf16 = raw[raw["model"] == "raw-bf16"].set_index("coder")["bits_per_entry"]
    assert bf16["planes-ans"] < bf16["zstd-19"]
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
    assert len(tot) == 2 * (4 + 2) * 2  # + best and best-parametric
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


def test_every_row_adds_up_and_payload_is_the_blob_less_its_framing(gennorm_x):
    from coders import encode
    from coders.models import build_model

    q = UniformQuantizer(scale_mult=0.5, block_size=4096)
    qz = q.quantize(gennorm_x)
    n, nb = qz.n, -(-qz.n // 4096)
    assert qz.side_bits == 32 + 16 * nb  # the step and one bf16 scale per block
    models = ["histogram", "normal", "laplace", "gennorm", "zi-gennorm"]
    df = bits_per_entry(gennorm_x, q, models=models, coders=["ans", "range", "huffman", "zstd-3"])
    assert len(df) == len(models) * 3 + 1 and (df["error"] == "").all()
    np.testing.assert_array_equal(df["total_bits"], df["payload_bits"] + df["side_bits"] + qz.side_bits)
    np.testing.assert_allclose(df["bits_per_entry"] * n, df["payload_bits"] + df["side_bits"], rtol=1e-12)
    np.testing.assert_allclose(df["total_bits_per_entry"] * n, df["total_bits"], rtol=1e-12)
    framing = 8 * (40 + 16)  # header + one chunk length + the (empty) escape section length
    values = q.normalize(gennorm_x)
    for r in df.itertuples():
        if r.coder == "zstd-3":  # zstd's own frame header is part of its count
            assert r.side_bits == 0
            assert r.payload_bits == 8 * len(encode(qz.symbols, None, "zstd-3")) - framing
            continue
        m = build_model(r.selected or r.model, qz, values)
        assert r.side_bits == m.side_bits and r.n_escapes == 0
        blob_bits = 8 * len(encode(qz.symbols, m, r.coder)) - framing
        if r.coder in ("ans", "range"):  # whole 32-bit words, the final state included
            assert r.payload_bits == blob_bits
        else:  # Huffman: the lane table's width byte and byte count are framing (40 bits, 6
            # counted for the width); the lane table and the stream are each padded to whole bytes
            assert 0 <= blob_bits - r.payload_bits - (40 - 6) < 16


def test_huffman_beating_ans_under_a_degenerate_fit_is_explained():
    from coders.entropy import huffman_code
    from coders.models import build_model
    from coders.report import HUFFMAN_BELOW_MODEL

    fam = pytest.importorskip("gradstats.families")
    x = fam.GenNorm(beta=0.8, scale=1e-3).sample(50_000, rng=1).astype(np.float32)
    x[np.random.default_rng(2).random(x.size) < 0.37] = 0.0  # dead units: 37% exact zeros
    q = UniformQuantizer(scale_mult=0.5)
    df = bits_per_entry(x, q, models=["gennorm:values", "zi-gennorm"], coders=["ans", "huffman"])
    g = df[df["model"] == "gennorm:values"].set_index("coder")
    # the continuous fit runs beta to its bound and puts ~all mass on symbol 0: ANS pays that model's
    # cross-entropy, Huffman far less (same table, same side bits)
    assert "beta_at_lower_bound" in g.loc["ans", "notes"]
    assert abs(g.loc["ans", "gap_payload_cross_entropy"]) < 1e-3
    assert g.loc["huffman", "bits_per_entry"] < 0.8 * g.loc["ans", "bits_per_entry"]
    assert g.loc["huffman", "side_bits"] == g.loc["ans", "side_bits"]
    assert HUFFMAN_BELOW_MODEL in g.loc["huffman", "notes"]
    assert HUFFMAN_BELOW_MODEL not in g.loc["ans", "notes"]
    # Huffman's payload is exactly sum over symbols of its lengths for that same table (+ lanes)
    qz = q.quantize(x)
    m = build_model("gennorm", qz, q.normalize(x), fit="values")
    lens = huffman_code(m).lengths[m.indices(qz.symbols)]
    assert 0 <= g.loc["huffman", "payload_bits"] - lens.sum() < 6 + 13 * 16
    # the frequent symbols 0, +-1 get <= 3 bits, while -log2 q(+-1) under the model is > 5 bits
    assert (huffman_code(m).lengths[m.indices(np.array([-1, 0, 1]))] <= 3).all()
    assert (-np.log2(m.probs[m.indices(np.array([-1, 1]))]) > 5).all()
    # a model that fits (zero-inflated) has no note and ANS beats Huffman again
    z = df[df["model"] == "zi-gennorm"].set_index("coder")
    assert (z["notes"] == "").all()
    zb = z["bits_per_entry"]
    assert zb["ans"] < zb["huffman"] < g.loc["huffman", "bits_per_entry"]


@pytest.mark.parametrize("quantizer", [UniformQuantizer(scale_mult=0.5), UniformQuantizer(scale_mult=2.0),
                                       UniformQuantizer(scale_mult=0.25, stochastic=True),
                                       UniformQuantizer(levels=7)], ids=lambda q: q.name)
def test_payload_meets_the_cross_entropy_of_what_the_coder_uses_on_every_row(quantizer):
    # zero-heavy data and degenerate continuous fits: the models the limit used to be wrong for
    fam = pytest.importorskip("gradstats.families")
    x = fam.GenNorm(beta=0.8, scale=1e-3).sample(70_000, rng=7).astype(np.float32)
    x[np.random.default_rng(8).random(x.size) < 0.5] = 0.0
    models = ["histogram", "normal", "laplace", "gennorm", "t", "zi-gennorm", "gennorm:values",
              "zi-gennorm:values", "t:values"]
    df = bits_per_entry(x, quantizer, models=models, coders=["ans", "range", "huffman"])
    rows = df[df["model"].isin(models)]
    assert len(rows) == 3 * len(models) and (rows["error"] == "").all()
    lanes = -(-x.size // 4096)
    for r in rows.itertuples():
        limit = r.cross_entropy * r.n
        if r.coder in ("ans", "range"):  # whole 32-bit words and the final state: < 64 bits a chunk
            assert -1e-6 <= r.payload_bits - limit < 64, r
        else:  # Huffman pays its lengths exactly, plus the lane table
            assert -1e-6 <= r.payload_bits - limit <= 6 + (lanes - 1) * 20, r
        assert r.gap_payload_cross_entropy >= -1e-9
