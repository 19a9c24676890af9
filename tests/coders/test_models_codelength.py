"""Code-length fits: the fast cell law is the family's, the objective is the model's cross-entropy,
the fit recovers parameters from coarse bins and never loses to its warm start."""

import numpy as np
import pytest

from coders.models import Codebooks, cell_probs, family_model, fit_codelength, is_degenerate
from coders.models.codelength import SymbolCounts, make_family
from coders.quantizers import EntropyConstrainedQuantizer, LloydMaxQuantizer, UniformQuantizer
from gradstats.families import GenNorm, Laplace, Normal, StudentT, ZeroInflated

EDGES = np.array([-np.inf, -40.0, -3.0, -1.0, -0.25, 0.0, 0.1, 0.5, 2.0, 7.0, 35.0, np.inf])
DISTS = [Normal(0.3, 1.5), Laplace(-0.2, 0.7), GenNorm(0.6, 0.1, 0.4), GenNorm(2.7, 0.0, 2.0),
         StudentT(3.0, 0.05, 0.8), ZeroInflated(GenNorm(0.9, 0.0, 1.0), 0.3),
         ZeroInflated(Laplace(0.2, 2.0), 0.1)]


@pytest.mark.parametrize("dist", DISTS, ids=repr)
def test_cell_probs_are_the_familys_interval_probs(dist):
    got = cell_probs(dist.name, dict(dist.params), EDGES)
    np.testing.assert_allclose(got, dist.interval_probs(EDGES), rtol=1e-9, atol=1e-300)
    assert got.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("quantizer", [UniformQuantizer(scale_mult=0.5), UniformQuantizer(levels=7),
                                       UniformQuantizer(scale_mult=0.7, stochastic=True),
                                       EntropyConstrainedQuantizer(scale_mult=0.5, lam=0.3)],
                         ids=lambda q: q.name)
def test_objective_is_the_cross_entropy_of_the_table_a_coder_gets(quantizer):
    x = GenNorm(0.8, 0.0, 1.0).sample(20_000, rng=0)
    qz = quantizer.quantize(x)
    dist = GenNorm(0.75, 0.01, 1.1)
    m = family_model(dist, qz, n_params=3)  # n_params: the parameters as given, no bf16 rounding
    s = qz.symbols
    data = SymbolCounts.of(s, qz, m.lo, m.hi)
    # stochastic cells: the search integrates the triangle on a coarser grid (16 points per step)
    rel = 1e-4 if qz.stochastic else 1e-6
    assert data.bits("gennorm", dict(dist.params)) == pytest.approx(m.cross_entropy(s), rel=rel)


@pytest.mark.parametrize("beta", [0.6, 1.0, 1.6])
def test_coarse_bins_recover_the_shape_where_the_continuous_fit_of_bin_centres_cannot(beta):
    # at 2 x RMS almost every value lands in 3 bins; the symbols still pin down (beta, scale)
    x = GenNorm(beta, 0.0, 1.0).sample(200_000, rng=1)
    q = UniformQuantizer(scale_mult=2.0)
    qz = q.quantize(x)
    fit = Codebooks(qz, q.normalize(x)).codelength("gennorm")
    assert fit.params["beta"] == pytest.approx(beta, rel=0.1)
    assert fit.flags == ()


def test_fit_never_loses_to_its_best_start_and_holds_a_fixed_loc():
    x = Laplace(0.0, 1.0).sample(30_000, rng=2)
    qz = UniformQuantizer(scale_mult=1.0).quantize(x)
    data = SymbolCounts.of(qz.symbols, qz, int(qz.symbols.min()), int(qz.symbols.max()))
    starts = [("far", {"beta": 4.0, "loc": 0.5, "scale": 3.0}),
              ("near", {"beta": 1.1, "loc": 0.0, "scale": 1.0})]
    fit = fit_codelength("gennorm", data, starts)
    assert fit.start == "near" and fit.bits <= data.bits("gennorm", starts[1][1])
    held = fit_codelength("gennorm", data, starts, loc=0.0)
    assert held.params["loc"] == 0.0 and held.bits >= fit.bits - 1e-9


def test_shape_on_its_bound_is_flagged_and_degenerate():
    # a uniform sample: GenNorm's code-length optimum runs beta to its upper bound
    x = np.random.default_rng(3).uniform(-1, 1, 50_000)
    qz = UniformQuantizer(step=0.05).quantize(x)
    m = Codebooks(qz, x).model("gennorm")
    assert any(f.startswith("beta_at_upper_bound") for f in m.flags) and is_degenerate(m.flags)
    tiny = UniformQuantizer(scale_mult=0.5).quantize(x[:10])
    small = Codebooks(tiny, x[:10]).model("laplace")
    assert any(f.startswith("small_sample") for f in small.flags) and is_degenerate(small.flags)


def test_lloyd_max_cells_are_fitted_too():
    x = StudentT(4.0, 0.0, 1.0).sample(40_000, rng=4)
    q = LloydMaxQuantizer(8, family="laplace")
    qz = q.quantize(x)
    cb = Codebooks(qz, q.normalize(x))
    fitted = cb.model("t")
    values = Codebooks(qz, q.normalize(x), fit="values").model("t")
    assert fitted.cross_entropy(qz.symbols) <= values.cross_entropy(qz.symbols) + 1e-4
    assert make_family("t", cb.codelength("t").params).name == "t"


@pytest.mark.parametrize("beta", [0.3, 0.8, 1.0, 2.0, 6.0])
def test_gennorm_beta_of_ratio_inverts_the_moment_ratio(beta):
    from scipy.special import gamma

    from coders.models.codelength import BETA_RANGE, gennorm_beta_of_ratio

    ratio = gamma(3 / beta) * gamma(1 / beta) / gamma(2 / beta) ** 2
    assert gennorm_beta_of_ratio(ratio) == pytest.approx(beta, rel=2e-3)
    assert gennorm_beta_of_ratio(1.3) == BETA_RANGE[1]  # below the uniform's 4/3
    assert gennorm_beta_of_ratio(1e9) == BETA_RANGE[0]


@pytest.mark.parametrize("dist", [Normal(0.3, 1.5), Laplace(-0.2, 0.7), GenNorm(0.7, 0.1, 0.4),
                                  GenNorm(2.5, 0.0, 2.0)], ids=repr)
def test_binned_start_is_near_the_law_on_fine_cells(dist):
    from coders.models.codelength import binned_start

    x = dist.sample(200_000, rng=5)
    qz = UniformQuantizer(scale_mult=0.1).quantize(x)
    s = qz.symbols
    data = SymbolCounts.of(s, qz, int(s.min()), int(s.max()))
    got = binned_start(dist.name, data)
    sd = float(np.std(x))
    for k, v in dist.params.items():
        # the model domain is x's (exponent 0): loc within 3 % of a sd, the rest within 5 %
        tol = 0.03 * sd if k == "loc" else 0.05 * abs(v)
        assert got[k] == pytest.approx(v, abs=tol), (k, got)
    one = SymbolCounts.of(np.zeros(50, dtype=np.int64), qz, -1, 1)
    assert binned_start("gennorm", one) is None  # every count in one cell: nothing to start from
    assert binned_start("t", data) is None


@pytest.mark.parametrize("quantizer", [UniformQuantizer(scale_mult=0.5), UniformQuantizer(levels=7),
                                       UniformQuantizer(scale_mult=0.7, stochastic=True)],
                         ids=lambda q: q.name)
@pytest.mark.parametrize("dist", DISTS, ids=repr)
def test_batched_objective_is_the_objective_of_each_set(quantizer, dist):
    x = dist.sample(20_000, rng=6)
    qz = quantizer.quantize(x)
    s = qz.symbols
    data = SymbolCounts.of(s, qz, int(s.min()) + 1, int(s.max()) - 1)  # some escapes too
    base = dict(dist.base.params) | {"pi": dist.pi} if isinstance(dist, ZeroInflated) else dict(dist.params)
    sets = [base, {**base, "scale": base["scale"] * 3.0, "loc": base["loc"] + 0.2},
            {**base, "scale": base["scale"] * 1e-4}, {**base, "scale": 0.0}]
    params = {k: np.array([p[k] for p in sets]) for k in base}
    got = data.bits_batch(dist.name, params)
    want = [data.bits(dist.name, p) for p in sets]
    np.testing.assert_allclose(got[:3], want[:3], rtol=1e-9)
    assert got[3] == np.inf == want[3]


@pytest.mark.parametrize("speculative", [True, False])
def test_nelder_mead_is_scipys_step_for_step(speculative):
    """The batched search takes scipy's steps: the same optimum and value on a bounded Rosenbrock
    valley and on a kinked function, from the same initial simplex."""
    import scipy.optimize

    from coders.models.codelength import nelder_mead

    def rosen(x):
        return float(100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2 + abs(x[2] - 0.3))

    lower, upper = np.array([-2.0, -1.0, -1.0]), np.array([2.0, 0.9, 1.0])
    x0 = np.array([-1.2, 0.5, 0.8])
    simplex = np.vstack([x0, x0 + 0.3 * np.eye(3)])
    calls = []

    def batch(xs):
        calls.append(len(xs))
        return np.array([rosen(x) for x in xs])

    ref = scipy.optimize.minimize(rosen, x0, method="Nelder-Mead",
                                  bounds=list(zip(lower, upper, strict=True)),
                                  options={"maxiter": 400, "initial_simplex": simplex, "xatol": 1e-6,
                                           "fatol": 1e-9})
    x, fx = nelder_mead(batch, simplex, lower, upper, xatol=1e-6, fatol=1e-9, maxiter=400,
                        speculative=speculative)
    np.testing.assert_allclose(x, ref.x, rtol=1e-9, atol=1e-12)
    assert fx == pytest.approx(ref.fun, rel=1e-9, abs=1e-15)
    if speculative:  # one call per iteration (plus shrinks) instead of one or two
        assert len(calls) < 0.7 * ref.nfev
    else:  # exactly scipy's points
        assert sum(calls) == ref.nfev


def test_gennorm_spike_search_runs_along_beta_log_scale(monkeypatch):
    """GenNorm's search coordinate is beta log(scale / scale0): a round trip of the parameters, and
    on a spike (a GenNorm far narrower than the cells, heavy tails) it needs fewer evaluations than
    the log-scale coordinate for no more bits."""
    import coders.models.codelength as cl

    c = cl._Coordinates("gennorm", {"beta": 0.3, "loc": 0.0, "scale": 2.0}, None)
    p = {"beta": 0.25, "loc": 0.1, "scale": 1e-6}
    back = c.to_params(c.to_x(p))
    assert back["scale"] == pytest.approx(1e-6, rel=1e-12) and back["beta"] == pytest.approx(0.25)
    batch = c.to_params_batch(np.vstack([c.to_x(p), c.to_x(p)]))
    assert batch["scale"] == pytest.approx([1e-6, 1e-6], rel=1e-12)
    x = GenNorm(0.5, 0.0, 1.0).sample(40_000, rng=1)
    x[np.random.default_rng(0).random(x.size) < 0.6] = 0.0  # dead units: an atom the fit turns into a spike
    qz = UniformQuantizer(scale_mult=0.5).quantize(x)
    data = SymbolCounts.of(qz.symbols, qz, int(qz.symbols.min()), int(qz.symbols.max()))
    starts = [("moments", {"beta": 1.0, "loc": 0.0, "scale": float(np.mean(np.abs(x)))})]
    fit = fit_codelength("gennorm", data, starts)
    assert any(f.startswith("scale_at_lower_bound") for f in fit.flags)  # a spike indeed

    class LogScale(cl._Coordinates):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.tail_scale = False

    monkeypatch.setattr(cl, "_Coordinates", LogScale)
    old = fit_codelength("gennorm", data, starts)
    # fewer evaluations, the same optimum to the search's tolerance (1e-5 bits per symbol)
    assert fit.evaluations < 0.8 * old.evaluations and fit.bits <= old.bits + 1e-5
