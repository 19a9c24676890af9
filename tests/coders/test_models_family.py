"""Family models: tables vs scipy over each quantizer's cells, zero inflation, stochastic rounding,
table limits; the full quantizer x model x coder roundtrip property."""

import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from coders.entropy import decode, encode
from coders.models import (
    PROB_FLOOR,
    bf16_params,
    build_model,
    empirical_entropy,
    family_model,
    fit_dist,
    histogram_model,
    range_header_bits,
    stochastic_rounding_probs,
)
from coders.quantizers import EntropyConstrainedQuantizer, LloydMaxQuantizer, UniformQuantizer

gradstats_families = pytest.importorskip("gradstats.families")


def test_family_model_matches_scipy_cells():
    x = np.random.default_rng(0).laplace(scale=2.0, size=50_000)
    q = UniformQuantizer(step=1.0).quantize(x)
    dist = gradstats_families.Laplace(loc=0.0, scale=2.0)  # exact in bf16
    m = family_model(dist, q)
    k = np.arange(m.lo, m.hi + 1)
    ref = scipy.stats.laplace(scale=2.0)
    expected = ref.cdf(k + 0.5) - ref.cdf(k - 0.5)
    np.testing.assert_allclose(m.probs[:-1], np.maximum(expected, PROB_FLOOR), rtol=1e-6)
    # the escape entry holds the tails beyond the table
    tails = ref.cdf(m.lo - 0.5) + ref.sf(m.hi + 0.5)
    assert m.probs[-1] == pytest.approx(max(tails, PROB_FLOOR), rel=1e-6)
    assert m.side_bits == 16 * 2 + range_header_bits(m.lo, m.table_size)  # bf16 loc, scale + range
    # a scipy distribution cannot be rebuilt from bf16 parameters: 32 bits each
    assert family_model(ref, q).side_bits == 32 * 1 + range_header_bits(m.lo, m.table_size)
    # the true model's cross-entropy is close to the empirical entropy
    assert m.cross_entropy(q.symbols) == pytest.approx(empirical_entropy(q.symbols), abs=0.01)


def test_family_model_on_clipped_quantizer_has_open_end_cells():
    x = np.random.default_rng(1).standard_normal(10_000)
    q = UniformQuantizer(levels=7, clip_quantile=0.99).quantize(x)
    m = family_model(gradstats_families.Normal(0.0, 1.0), q)
    assert (m.lo, m.hi) == (-3, 3)
    assert m.probs[:-1].sum() == pytest.approx(1.0, abs=1e-6)  # nothing can escape
    assert m.probs[-1] == pytest.approx(PROB_FLOOR, rel=1e-3)


def test_zero_inflated_model_puts_mass_on_zero():
    rng = np.random.default_rng(2)
    x = rng.laplace(size=20_000)
    x[rng.random(x.size) < 0.4] = 0.0
    q = UniformQuantizer(step=0.5).quantize(x)
    zi = build_model("zi-laplace", q, x)
    plain = build_model("laplace", q, x)
    assert zi.params["pi"] == pytest.approx(0.4, abs=0.02)
    assert zi.cross_entropy(q.symbols) < plain.cross_entropy(q.symbols) - 0.05
    assert zi.side_bits == plain.side_bits + 16
    # the table is the one a decoder rebuilds from the bf16 parameters it receives
    zi_dist = fit_dist(x, "zi-laplace")
    sent = bf16_params(zi_dist)
    assert abs(sent.pi - zi_dist.pi) <= 2**-8 * zi_dist.pi
    assert abs(sent.base.scale - zi_dist.base.scale) <= 2**-8 * zi_dist.base.scale
    np.testing.assert_allclose(family_model(zi_dist, q).probs, family_model(sent, q, n_params=3).probs)


def test_gennorm_codebook_beats_normal_and_laplace_on_gennorm_data():
    x = gradstats_families.GenNorm(beta=0.6, scale=1.0).sample(100_000, rng=3)
    quant = UniformQuantizer(scale_mult=0.5)
    q = quant.quantize(x)
    u = quant.normalize(x)
    ce = {f: build_model(f, q, u).cross_entropy(q.symbols) for f in ("normal", "laplace", "gennorm")}
    h = empirical_entropy(q.symbols)
    assert ce["gennorm"] < ce["laplace"] < ce["normal"]
    assert ce["gennorm"] == pytest.approx(h, rel=0.005)


def test_stochastic_rounding_model_is_the_triangle_convolution():
    # P(K = 0) for Laplace(0, 1), step a: int (1 - |x| / a) f(x) dx = 1 - e^-a - (1 - e^-a (1 + a)) / a
    a = 0.7
    p0 = 1 - math.exp(-a) - (1 - math.exp(-a) * (1 + a)) / a
    pk = stochastic_rounding_probs(gradstats_families.Laplace(0.0, 1.0), -3, 3, a, sub=256)
    assert pk[3] == pytest.approx(p0, rel=1e-4)
    assert pk.sum() < 1 and pk[0] == pytest.approx(pk[-1], rel=1e-9)
    rng = np.random.default_rng(0)
    x = rng.laplace(size=200_000)
    x[rng.random(x.size) < 0.3] = 0.0
    dist = gradstats_families.ZeroInflated(gradstats_families.Laplace(0.0, 1.0), 0.3)
    q = UniformQuantizer(step=a, stochastic=True).quantize(x)
    m = family_model(dist, q)
    assert m.probs[-m.lo] == pytest.approx(0.3 + 0.7 * p0, rel=2e-3)
    assert m.cross_entropy(q.symbols) == pytest.approx(empirical_entropy(q.symbols), abs=2e-3)
    # clipping: the end symbols absorb the tails
    qc = UniformQuantizer(levels=5, clip_quantile=0.9, stochastic=True).quantize(x)
    mc = family_model(dist, qc)
    assert mc.probs[:-1].sum() == pytest.approx(1.0, abs=1e-6)
    assert mc.cross_entropy(qc.symbols) == pytest.approx(empirical_entropy(qc.symbols), abs=2e-3)


def test_model_table_limit_and_window():
    s = np.concatenate([np.zeros(100, dtype=np.int64), [10**12, -(10**12)]])
    m = histogram_model(s, max_table=64)
    assert m.table_size == 65 and m.lo <= 0 <= m.hi
    assert m.probs[-1] == pytest.approx(2 / 102, rel=1e-4)
    with pytest.raises(ValueError, match="max_table"):
        histogram_model(s, max_table=0)
    with pytest.raises(ValueError, match="integer"):
        histogram_model(np.array([0.5]))


def test_fit_errors_are_clear():
    q = UniformQuantizer(step=1.0).quantize(np.zeros(10))
    with pytest.raises(ValueError, match="one distinct value"):
        build_model("gennorm", q, np.zeros(10))
    with pytest.raises(ValueError, match="unknown family"):
        build_model("cauchy-ish", q, np.arange(10.0))


QUANTIZERS = [
    UniformQuantizer(scale_mult=0.5),
    UniformQuantizer(levels=9, clip_quantile=0.98),
    UniformQuantizer(scale_mult=1.0, block_size=16, stochastic=True),
    LloydMaxQuantizer(8, family=scipy.stats.laplace()),
    EntropyConstrainedQuantizer(scale_mult=0.5, lam=0.3),
]


MODELS = ["histogram", "normal", "laplace", "gennorm", "zi-gennorm", "mismatched"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    x=arrays(np.float64, st.integers(30, 400),
             elements=st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, allow_subnormal=False)),
    outliers=st.lists(st.floats(-1e12, 1e12, allow_nan=False), max_size=3),
    zero_frac=st.floats(0, 0.6),
    qi=st.integers(0, len(QUANTIZERS) - 1),
    model=st.sampled_from(MODELS),
    coder=st.sampled_from(["ans", "range", "huffman"]),
)
def test_roundtrip_every_quantizer_model_coder(x, outliers, zero_frac, qi, model, coder):
    x = x.copy()
    x[: int(zero_frac * x.size)] = 0.0
    x[: len(outliers)] += outliers  # values the fitted model predicts badly
    if np.unique(x).size < 3:
        x[:3] = [-1.0, 0.5, 2.0]
    quant = QUANTIZERS[qi]
    q = quant.quantize(x)
    if model == "mismatched":
        # a model built for unrelated data: most symbols are escapes or improbable
        m = family_model(scipy.stats.norm(loc=50.0, scale=0.1), q)
    else:
        try:
            m = build_model(model, q, quant.normalize(x))
        except ValueError as err:  # degenerate fits must say so, not produce nonsense
            assert "degenerate" in str(err) or "distinct" in str(err)
            return
    blob = encode(q.symbols, m, coder)
    np.testing.assert_array_equal(decode(blob, m, q.n, coder), q.symbols)
