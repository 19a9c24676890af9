"""Distribution families for gradient entries: Normal, Laplace, GenNorm, StudentT and ZeroInflated.

Every family is a frozen distribution with the same small verbs as `scipy.stats` (`pdf`, `logpdf`,
`cdf`, `sf`, `ppf`, `isf`, `logcdf`, `logsf`), plus `interval_probs(edges)` for codebooks,
`sample(n, rng)`, `params` (a dict by name), `n_params`, and the estimators as classmethods, as
scipy's own: `fit(x)` returns the fitted frozen family, `estimate(v, loc, method)` the numbers
behind it (`Estimate`) for the `gradstats.fit` facade. Normal and Laplace are fitted in closed
form, GenNorm by `gradstats.gennorm_solver`, StudentT by `gradstats.studentt_solver`, and
ZeroInflated fits its base on the non-zeros. The densities are delegated to `scipy.stats` /
`scipy.special`; only what scipy lacks is written here (the log tail of the Laplace, the
zero-inflated mixture).

Parameterizations follow scipy: `GenNorm(beta, loc, scale)` has density
beta / (2 scale Gamma(1/beta)) exp(-|(x - loc) / scale|^beta) (Nadarajah 2005, "A generalized
normal distribution"); beta = 2 is Normal(loc, scale / sqrt 2), beta = 1 is Laplace(loc, scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import scipy.special
import scipy.stats

from gradstats.arrays import ConstantSample, chunked_sum, median, parse_loc, prepare
from gradstats.gennorm_solver import fit_gennorm
from gradstats.studentt_solver import fit_t

ArrayLike = Any

MIN_SHAPE_N = 30
"""Fewest entries from which the fit tables (`fit_all`, `fit_capture`) estimate a shape parameter
(GenNorm beta, Student-t df). Below it the MLE ends on a search bound on most samples (10 Normal
entries: beta at 0.05 or 50 in 70 % of samples with a fitted loc, 50 % with loc 0; 32 entries:
15 %, 5 %), so the table reports no shape. `gradstats.fit` itself fits any size unless asked."""


@dataclass
class Estimate:
    """What a family's estimator returns: parameters by name, the maximized log-likelihood (NaN
    where the caller must evaluate it, e.g. for method='moments'), flags, standard errors."""

    params: dict[str, float]
    loglik: float
    flags: list[str] = field(default_factory=list)
    se: dict[str, float] = field(default_factory=dict)


def _f64(x: ArrayLike) -> np.ndarray:
    """Evaluation points as float64 numpy (torch tensors are moved to the host first)."""
    if hasattr(x, "detach"):
        x = x.detach().to("cpu").double().numpy()
    return np.asarray(x, dtype=np.float64)


class Family:
    """A frozen continuous distribution; subclasses set `name`, `param_names` and `_frozen`."""

    name: ClassVar[str] = ""
    param_names: ClassVar[tuple[str, ...]] = ()
    _frozen: Any

    @property
    def params(self) -> dict[str, float]:
        """The parameters by name, in `param_names` order."""
        return {k: float(getattr(self, k)) for k in self.param_names}

    @property
    def n_params(self) -> int:
        """Number of parameters of the family (all free; `Fit.k` counts those actually fitted)."""
        return len(self.param_names)

    @property
    def center(self) -> float:
        """Median of the distribution; `interval_probs` uses sf above it and cdf below it."""
        return float(self.loc)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v:.6g}" for k, v in self.params.items())
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.params == other.params  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(self.params.items())))

    def pdf(self, x: ArrayLike) -> np.ndarray:
        """Density f(x)."""
        return self._frozen.pdf(_f64(x))

    def logpdf(self, x: ArrayLike) -> np.ndarray:
        """log f(x), accurate where f(x) underflows."""
        return self._frozen.logpdf(_f64(x))

    def cdf(self, x: ArrayLike) -> np.ndarray:
        """F(x) = P(X <= x)."""
        return self._frozen.cdf(_f64(x))

    def sf(self, x: ArrayLike) -> np.ndarray:
        """Survival function 1 - F(x), computed directly (no cancellation in the upper tail)."""
        return self._frozen.sf(_f64(x))

    def logcdf(self, x: ArrayLike) -> np.ndarray:
        """log F(x)."""
        with np.errstate(divide="ignore"):
            return self._frozen.logcdf(_f64(x))

    def logsf(self, x: ArrayLike) -> np.ndarray:
        """log(1 - F(x))."""
        with np.errstate(divide="ignore"):
            return self._frozen.logsf(_f64(x))

    def ppf(self, q: ArrayLike) -> np.ndarray:
        """Quantile function F^-1(q)."""
        return self._frozen.ppf(_f64(q))

    def cdf_logs(self, x: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(F(x), log F(x), log S(x)) at the same points, for goodness statistics that need all
        three (KS and AD); a family overrides it where one evaluation serves the three."""
        return self.cdf(x), self.logcdf(x), self.logsf(x)

    standard_tail: Any = None
    """For a family symmetric about `loc` (Normal, Laplace, GenNorm): a method u -> (T, log T, f0,
    psi) of the standardized law Z = (X - loc) / scale at u >= 0, with T(u) = P(Z > u), f0 its
    density and psi(u) = E[(Z - u)^+] = int_u^inf T (the tail integral W1 needs); the goodness
    statistics interpolate them along a sorted sample (`gradstats.sorted_cdf`). None elsewhere."""

    tail_interpolation: ClassVar[bool] = False
    """True where `standard_tail` is costly (GenNorm: two incomplete gammas a point), so that the
    goodness statistics evaluate it exactly at every 32nd sorted point and interpolate between."""

    @property
    def tail_power(self) -> float:
        """p of the coordinate v = u^p in which the tail is smoothest to interpolate (1: u itself)."""
        return 1.0

    def isf(self, q: ArrayLike) -> np.ndarray:
        """Inverse survival function: the x with P(X > x) = q, accurate for tiny q."""
        return self._frozen.isf(_f64(q))

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """n independent draws (float64) using `rng` (a Generator or a seed)."""
        return np.asarray(self._frozen.rvs(size=int(n), random_state=np.random.default_rng(rng)), np.float64)

    def interval_probs(self, edges: ArrayLike) -> np.ndarray:
        """P(edges[i] < X <= edges[i+1]) for each cell, accurate far into both tails.

        Cells above the median use the survival function and cells below it the cdf, each in the
        log domain: P = S(a) (1 - exp(log S(b) - log S(a))) with `expm1`, so a cell 30 scales out
        gets its true 1e-14 (or 1e-200) probability instead of a difference of two numbers near 1.
        Edges may be +-inf; they must be non-decreasing.
        """
        e = _f64(edges).ravel()
        if e.size < 2:
            raise ValueError(f"interval_probs needs at least 2 edges, got {e.size}")
        if np.isnan(e).any() or np.any(np.diff(e) < 0):
            raise ValueError("interval_probs: edges must be non-decreasing and not NaN")
        a, b = e[:-1], e[1:]
        m = self.center
        out = np.empty(a.shape, np.float64)
        up, lo = a >= m, b <= m
        mid = ~(up | lo)
        with np.errstate(invalid="ignore", over="ignore"):
            if up.any():
                la, lb = self.logsf(a[up]), self.logsf(b[up])
                out[up] = np.where(np.isneginf(la), 0.0, np.exp(la) * -np.expm1(lb - la))
            if lo.any():
                la, lb = self.logcdf(a[lo]), self.logcdf(b[lo])
                out[lo] = np.where(np.isneginf(lb), 0.0, np.exp(lb) * -np.expm1(la - lb))
        if mid.any():
            out[mid] = 1.0 - self.cdf(a[mid]) - self.sf(b[mid])
        return np.clip(out, 0.0, 1.0)

    @classmethod
    def too_few(cls, n: int, min_shape_n: int = MIN_SHAPE_N) -> str | None:
        """Why n entries are too few to fit this family (a flag), or None when they suffice: a
        family with a shape parameter needs `min_shape_n` entries."""
        shapes = [p for p in cls.param_names if p not in ("loc", "scale")]
        if shapes and n < min_shape_n:
            return (f"too_small: n={n} < {min_shape_n} entries, too few to estimate the shape "
                    f"{', '.join(shapes)} (not fitted)")
        return None

    @classmethod
    def estimate(cls, x: ArrayLike, loc: float | None, method: str) -> Estimate:
        """The family's estimator on a prepared finite 1-D vector (`arrays.prepare`).

        loc None estimates the location, a number holds it; method 'mle' or 'moments'.
        Raises `ConstantSample` when the sample has no spread.
        """
        raise NotImplementedError(f"{cls.__name__} has no estimator")

    @classmethod
    def fit(cls, x: ArrayLike, loc: str | float = "fit", method: str = "mle",
            nan_policy: str = "raise") -> Family:
        """Maximum-likelihood (or moments) fit of this family to the entries of `x`, frozen.

        The same estimate as `gradstats.fit(x, cls.name, ...)`, without its flags and criteria;
        a sample that cannot be fitted (empty, constant) raises ValueError.
        """
        if method not in ("mle", "moments"):
            raise ValueError(f"method must be 'mle' or 'moments', got {method!r}")
        loc_value = parse_loc(loc)
        v, _ = prepare(x, nan_policy)
        if len(v) == 0:
            raise ValueError(f"{cls.name} fit is degenerate: empty: no finite entries to fit")
        try:
            est = cls.estimate(v, loc_value, method)
        except ConstantSample as d:
            raise ValueError(f"{cls.name} fit is degenerate: constant: all {len(v)} entries equal "
                             f"{d.value:.6g} (a point mass; no scale can be fitted)") from None
        return cls(**est.params)


class _ScipyFamily(Family):
    """A family that is one `scipy.stats` distribution with its parameters in `param_names` order."""

    _scipy: ClassVar[Any] = None

    @property
    def _frozen(self) -> Any:  # type: ignore[override]
        """The frozen scipy distribution, made on first use (freezing costs ~1 ms; a fit table
        makes a distribution per family and record and often evaluates it without scipy)."""
        frozen = self.__dict__.get("_scipy_frozen")
        if frozen is None:
            frozen = self._scipy(*(getattr(self, k) for k in self.param_names))
            self.__dict__["_scipy_frozen"] = frozen
        return frozen

    def _freeze(self, **values: float) -> None:
        """Check and store the parameters (loc finite; every other one finite and > 0), then
        freeze the scipy distribution on them."""
        label = type(self).__name__
        for k in self.param_names:
            v = float(values[k])
            if not np.isfinite(v) or (k != "loc" and v <= 0):
                raise ValueError(f"{label}: {k} must be finite{'' if k == 'loc' else ' and > 0'}, got {v}")
            setattr(self, k, v)
        self.__dict__.pop("_scipy_frozen", None)


def _squared_deviations(c: Any, mu: float) -> Any:
    """sum (c - mu)^2 of a float64 chunk, in one buffer."""
    d = c - mu
    d *= d
    return d.sum()


class Normal(_ScipyFamily):
    """Normal(loc, scale): density exp(-(x - loc)^2 / (2 scale^2)) / (scale sqrt(2 pi))."""

    name = "normal"
    param_names = ("loc", "scale")
    _scipy = scipy.stats.norm

    def __init__(self, loc: float = 0.0, scale: float = 1.0):
        self._freeze(loc=loc, scale=scale)

    def standard_tail(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(T, log T, f0, psi) of the standardized family at u >= 0 (`Family.standard_tail`):
        T = Phi(-u), f0 = phi(u), psi = phi(u) - u Phi(-u); log T = log of ndtr's T (as accurate,
        relatively, as T is), log_ndtr only where T underflows (u > 38)."""
        t = scipy.special.ndtr(-u)
        with np.errstate(divide="ignore"):
            log_t = np.log(t)
        under = t == 0
        if under.any():
            log_t[under] = scipy.special.log_ndtr(-u[under])
        f0 = np.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)
        return t, log_t, f0, f0 - u * t

    # The verbs the goodness statistics evaluate on every sample point, straight from
    # scipy.special as scipy.stats.norm computes them (the same numbers) without its wrapper's
    # argument checks, which cost as much as the functions at 1e5 points.
    def cdf(self, x: ArrayLike) -> np.ndarray:
        """F(x) = Phi(z), z = (x - loc) / scale (scipy.special.ndtr)."""
        return scipy.special.ndtr((_f64(x) - self.loc) / self.scale)

    def sf(self, x: ArrayLike) -> np.ndarray:
        """S(x) = Phi(-z)."""
        return scipy.special.ndtr(-((_f64(x) - self.loc) / self.scale))

    def logcdf(self, x: ArrayLike) -> np.ndarray:
        """log Phi(z) (scipy.special.log_ndtr, accurate far into the lower tail)."""
        return scipy.special.log_ndtr((_f64(x) - self.loc) / self.scale)

    def logsf(self, x: ArrayLike) -> np.ndarray:
        """log Phi(-z)."""
        return scipy.special.log_ndtr(-((_f64(x) - self.loc) / self.scale))

    def ppf(self, q: ArrayLike) -> np.ndarray:
        """loc + scale Phi^-1(q) (scipy.special.ndtri); NaN outside [0, 1]."""
        return scipy.special.ndtri(_f64(q)) * self.scale + self.loc

    @classmethod
    def estimate(cls, x: ArrayLike, loc: float | None, method: str) -> Estimate:
        """Closed form (MLE and moments agree): mean, root mean square deviation;
        loglik = -n/2 (log(2 pi var) + 1)."""
        n = len(x)
        mu = chunked_sum(x, lambda c: (c.sum(),), 1)[0] / n if loc is None else float(loc)
        var = chunked_sum(x, lambda c: (_squared_deviations(c, mu),), 1)[0] / n
        if var == 0:
            raise ConstantSample(mu)
        return Estimate({"loc": mu, "scale": math.sqrt(var)}, -0.5 * n * (math.log(2 * math.pi * var) + 1))


class Laplace(_ScipyFamily):
    """Laplace(loc, scale): density exp(-|x - loc| / scale) / (2 scale)."""

    name = "laplace"
    param_names = ("loc", "scale")
    _scipy = scipy.stats.laplace

    def __init__(self, loc: float = 0.0, scale: float = 1.0):
        self._freeze(loc=loc, scale=scale)

    def standard_tail(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(T, log T, f0, psi) of the standardized family at u >= 0 (`Family.standard_tail`):
        T = f0 = psi = e^-u / 2, log T = -log 2 - u."""
        t = 0.5 * np.exp(-u)
        return t, -math.log(2.0) - u, t, t

    def cdf(self, x: ArrayLike) -> np.ndarray:
        """F(x) = 1 - e^-z / 2 above loc, e^z / 2 below (scipy's laplace._cdf), z = (x - loc) / scale."""
        z = (_f64(x) - self.loc) / self.scale
        with np.errstate(over="ignore"):
            return np.where(z > 0, 1.0 - 0.5 * np.exp(-z), 0.5 * np.exp(z))

    def sf(self, x: ArrayLike) -> np.ndarray:
        """S(x) = F at the mirror image of x (scipy's laplace._sf)."""
        z = -((_f64(x) - self.loc) / self.scale)
        with np.errstate(over="ignore"):
            return np.where(z > 0, 1.0 - 0.5 * np.exp(-z), 0.5 * np.exp(z))

    def ppf(self, q: ArrayLike) -> np.ndarray:
        """loc + scale (log 2q below 1/2, -log 2(1 - q) above); -inf / inf at 0 / 1, NaN outside
        [0, 1] (scipy's laplace._ppf and its wrapper)."""
        q = np.asarray(_f64(q))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(q > 0.5, -np.log(2 * (1 - q)), np.log(2 * q))
        out = z * self.scale + self.loc
        out = np.where(q == 0, -np.inf, np.where(q == 1, np.inf, out))
        return np.where((q >= 0) & (q <= 1), out, np.nan)

    # scipy.stats.laplace has no log tails (its logsf is log(sf), -inf beyond ~745 scales);
    # the closed form is log S(x) = log(1/2) - z for z = (x - loc) / scale >= 0.
    def logsf(self, x: ArrayLike) -> np.ndarray:
        """log(1 - F(x)) in closed form: -log 2 - z for z >= 0, log1p(-e^z / 2) for z < 0."""
        z = (_f64(x) - self.loc) / self.scale
        with np.errstate(over="ignore"):
            return np.where(z >= 0, -np.log(2.0) - z, np.log1p(-0.5 * np.exp(np.minimum(z, 0.0))))

    def logcdf(self, x: ArrayLike) -> np.ndarray:
        """log F(x) in closed form, the mirror image of `logsf`."""
        return self.logsf(2 * self.loc - _f64(x))

    @classmethod
    def estimate(cls, x: ArrayLike, loc: float | None, method: str) -> Estimate:
        """MLE in closed form: median, mean absolute deviation from it; loglik = -n (log(2 b) + 1).
        Moments: the Normal's mean, and scale = standard deviation / sqrt 2."""
        n = len(x)
        if method == "moments":
            p = Normal.estimate(x, loc, method).params
            return Estimate({"loc": p["loc"], "scale": p["scale"] / math.sqrt(2)}, math.nan)
        mu = median(x) if loc is None else float(loc)
        b = chunked_sum(x, lambda c: (abs(c - mu).sum(),), 1)[0] / n
        if b == 0:
            raise ConstantSample(mu)
        return Estimate({"loc": mu, "scale": b}, -n * (math.log(2 * b) + 1))


class GenNorm(_ScipyFamily):
    """Generalized normal GenNorm(beta, loc, scale) (scipy `gennorm`).

    Density beta / (2 scale Gamma(1/beta)) exp(-|(x - loc) / scale|^beta); the tail is
    S(x) = Q(1/beta, z^beta) / 2 for z = (x - loc) / scale >= 0 with Q the regularized upper
    incomplete gamma function (scipy.special.gammaincc), which scipy uses directly.
    """

    name = "gennorm"
    param_names = ("beta", "loc", "scale")
    tail_interpolation = True
    _scipy = scipy.stats.gennorm

    def __init__(self, beta: float = 2.0, loc: float = 0.0, scale: float = 1.0):
        self._freeze(beta=beta, loc=loc, scale=scale)

    @property
    def tail_power(self) -> float:
        """beta below 1 (T = Q(1/beta, u^beta) / 2 is smooth in u^beta, with neither the cusp at loc
        nor the slowly falling tail it has in u), else 1 (in u^beta, Q(1/beta, .) has an infinite
        slope at 0 when 1/beta < 1)."""
        return self.beta if self.beta < 1 else 1.0

    def standard_tail(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(T, log T, f0, psi) of the standardized family at u >= 0 (`Family.standard_tail`), w = u^b:
        T = Q(1/b, w) / 2, f0 = b e^-w / (2 Gamma(1/b)), psi = Gamma(2/b) Q(2/b, w) / (2 Gamma(1/b))
        - u T (E[(Z - u)^+] by the substitution w = z^b)."""
        b = self.beta
        with np.errstate(over="ignore", divide="ignore"):
            w = u**b
            t = 0.5 * scipy.special.gammaincc(1.0 / b, w)
            log_t = np.log(t)
        lg1 = math.lgamma(1.0 / b)
        f0 = (b / 2) * np.exp(-w - lg1)
        psi = 0.5 * math.exp(math.lgamma(2.0 / b) - lg1) * scipy.special.gammaincc(2.0 / b, w) - u * t
        return t, log_t, f0, np.maximum(psi, 0.0)

    # cdf, sf and ppf straight from scipy.special as scipy.stats.gennorm forms them (the same
    # numbers): the fit tables evaluate them at a few points per record (tail errors, the W1
    # crossings), where freezing a scipy distribution (~1 ms) cost more than the evaluation.
    # scipy's wrapper passes beta as an array of the points' shape when every point lies inside
    # the support (or (0, 1) for ppf) and as a 1-element array otherwise; numpy's power rounds
    # the two differently at beta = 1/2 and 2, so both are followed here (`_shape`).
    def _shape(self, inside: np.ndarray) -> np.ndarray:
        return np.full(inside.shape, self.beta) if inside.all() else np.array([self.beta])

    def _cdf_std(self, z: np.ndarray) -> np.ndarray:
        """scipy's gennorm.cdf of the standardized z (its wrapper's cases included)."""
        z = np.asarray(z, dtype=np.float64)
        inside = np.isfinite(z)
        b = self._shape(inside)
        zz = z if inside.all() else z[inside]
        c = 0.5 * np.sign(zz)
        with np.errstate(over="ignore"):
            f = (0.5 + c) - c * scipy.special.gammaincc(1.0 / b, abs(zz) ** b)
        if inside.all():
            return f.reshape(z.shape)
        out = np.where(np.isnan(z), np.nan, np.where(z > 0, 1.0, 0.0))
        out[inside] = f
        return out

    def cdf(self, x: ArrayLike) -> np.ndarray:
        """F(x) = (1/2 + c) - c Q(1/beta, |z|^beta), c = sign(z) / 2, z = (x - loc) / scale."""
        return self._cdf_std((_f64(x) - self.loc) / self.scale)

    def sf(self, x: ArrayLike) -> np.ndarray:
        """S(x) = F(loc - (x - loc)), by symmetry (scipy's gennorm._sf)."""
        return self._cdf_std(-((_f64(x) - self.loc) / self.scale))

    def ppf(self, q: ArrayLike) -> np.ndarray:
        """loc + scale sign(q - 1/2) Qinv(1/beta, 1 + c - 2 c q)^(1/beta); -inf / inf at 0 / 1,
        NaN outside [0, 1] (scipy's gennorm._ppf and its wrapper)."""
        q = np.asarray(_f64(q))
        inside = (q > 0) & (q < 1)
        b = self._shape(inside)
        qq = q if inside.all() else q[inside]
        c = np.sign(qq - 0.5)
        with np.errstate(invalid="ignore", over="ignore"):
            z = c * scipy.special.gammainccinv(1.0 / b, (1.0 + c) - 2.0 * c * qq) ** (1.0 / b)
        if inside.all():
            return (z * self.scale + self.loc).reshape(q.shape)
        out = np.where(q == 0, -np.inf, np.where(q == 1, np.inf, np.nan))
        out[inside] = z * self.scale + self.loc
        return out

    def cdf_logs(self, x: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(F, log F, log S) from one incomplete gamma G = Q(1/beta, |z|^beta), z = (x - loc) / scale.

        F = (1/2 + c) - c G and S = (1/2 - c) + c G with c = sign(z) / 2, log F = log F below the
        median and log1p(-S) above it, log S the mirror image: the operations of scipy's gennorm
        cdf / sf / logcdf / logsf, to the last bit, with one special-function call instead of six.
        """
        z = (_f64(x) - self.loc) / self.scale
        c = 0.5 * np.sign(z)
        with np.errstate(over="ignore"):
            # scipy's logcdf / logsf broadcast beta to an array; its cdf does too when every point
            # is inside the support, else it follows `_cdf_std`'s other path (`_shape`)
            b = np.full_like(z, self.beta)
            g = scipy.special.gammaincc(1.0 / b, abs(z) ** b)
        f = (0.5 + c) - c * g
        s = (0.5 - c) + c * g
        with np.errstate(divide="ignore"):
            log_f = np.where(z < 0, np.log(f), np.log1p(-s))
            log_s = np.where(z > 0, np.log(s), np.log1p(-f))
        if not np.isfinite(z).all():
            f = self._cdf_std(z)
        return f, log_f, log_s

    # log F and log S by the same operations (scipy's numbers) without freezing a scipy gennorm
    # (~1 ms each): a codebook's table (`interval_probs`) needs both on every build
    def logcdf(self, x: ArrayLike) -> np.ndarray:
        """log F(x), as scipy's gennorm.logcdf (`cdf_logs`)."""
        return self.cdf_logs(x)[1][()]

    def logsf(self, x: ArrayLike) -> np.ndarray:
        """log S(x), as scipy's gennorm.logsf (`cdf_logs`)."""
        return self.cdf_logs(x)[2][()]

    @classmethod
    def estimate(cls, x: ArrayLike, loc: float | None, method: str) -> Estimate:
        """Profile-likelihood Newton in beta (`gradstats.gennorm_solver`), se of beta included."""
        return Estimate(*fit_gennorm(x, loc, method))


class StudentT(_ScipyFamily):
    """Student's t StudentT(df, loc, scale) (scipy `t`): polynomial tails, P(|X| > x) ~ x^-df."""

    name = "t"
    param_names = ("df", "loc", "scale")
    _scipy = scipy.stats.t

    def __init__(self, df: float = 5.0, loc: float = 0.0, scale: float = 1.0):
        self._freeze(df=df, loc=loc, scale=scale)

    @classmethod
    def estimate(cls, x: ArrayLike, loc: float | None, method: str) -> Estimate:
        """L-BFGS-B on (log df, log scale, loc) (`gradstats.studentt_solver`)."""
        return Estimate(*fit_t(x, loc, method))


class ZeroInflated(Family):
    """Point mass `pi` at exactly 0 plus (1 - pi) times a continuous `base` family.

    Real gradients hold exact zeros (dead ReLUs, unused embedding rows, padding) that no
    continuous family can produce. `cdf(x) = pi [x >= 0] + (1 - pi) F(x)`.
    `pdf` and `logpdf` are the density with respect to Lebesgue measure plus a unit atom at 0:
    `pdf(0) = pi`, `pdf(x) = (1 - pi) f(x)` elsewhere, so that the log-likelihood
    `n0 log pi + sum_{x != 0} [log(1 - pi) + log f(x)]` is `logpdf(x).sum()`.
    """

    name = "zi"

    def __init__(self, base: Family, pi: float = 0.0):
        if not isinstance(base, Family) or isinstance(base, ZeroInflated):
            raise ValueError(f"ZeroInflated: base must be a continuous Family, got {base!r}")
        pi = float(pi)
        if not 0.0 <= pi < 1.0:
            raise ValueError(f"ZeroInflated: pi must be in [0, 1), got {pi}")
        self.base = base
        self.pi = pi
        self.name = f"zi-{base.name}"  # type: ignore[misc]

    @property
    def params(self) -> dict[str, float]:
        return {"pi": self.pi, **self.base.params}

    @property
    def param_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("pi", *self.base.param_names)

    @property
    def loc(self) -> float:
        return self.base.loc

    @property
    def center(self) -> float:
        return self.base.center

    def __repr__(self) -> str:
        return f"ZeroInflated({self.base!r}, pi={self.pi:.6g})"

    def pdf(self, x: ArrayLike) -> np.ndarray:
        x = _f64(x)
        return np.where(x == 0, self.pi, (1 - self.pi) * self.base.pdf(x))

    def logpdf(self, x: ArrayLike) -> np.ndarray:
        x = _f64(x)
        with np.errstate(divide="ignore"):
            return np.where(x == 0, np.log(self.pi), np.log1p(-self.pi) + self.base.logpdf(x))

    def cdf(self, x: ArrayLike) -> np.ndarray:
        x = _f64(x)
        return self.pi * (x >= 0) + (1 - self.pi) * self.base.cdf(x)

    def sf(self, x: ArrayLike) -> np.ndarray:
        x = _f64(x)
        return self.pi * (x < 0) + (1 - self.pi) * self.base.sf(x)

    def logcdf(self, x: ArrayLike) -> np.ndarray:
        x = _f64(x)
        with np.errstate(divide="ignore"):
            cont = np.log1p(-self.pi) + self.base.logcdf(x)
            return np.where(x >= 0, np.logaddexp(np.log(self.pi), cont), cont)

    def logsf(self, x: ArrayLike) -> np.ndarray:
        x = _f64(x)
        with np.errstate(divide="ignore"):
            cont = np.log1p(-self.pi) + self.base.logsf(x)
            return np.where(x < 0, np.logaddexp(np.log(self.pi), cont), cont)

    def ppf(self, q: ArrayLike) -> np.ndarray:
        """Generalized inverse inf{x: F(x) >= q}; the atom answers 0 for a whole range of q."""
        q = _f64(q)
        below = (1 - self.pi) * float(self.base.cdf(0.0))  # F(0-)
        lo, hi = q <= below, q > below + self.pi
        out = np.zeros(np.shape(q))
        # the base quantile only where it is the answer (it is the costly part, e.g. gammainccinv)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[lo] = self.base.ppf(q[lo] / (1 - self.pi))
            out[hi] = self.base.ppf((q[hi] - self.pi) / (1 - self.pi))
        return np.where((q < 0) | (q > 1) | np.isnan(q), np.nan, out)

    def isf(self, q: ArrayLike) -> np.ndarray:
        """Generalized inverse of the survival function, accurate for tiny q in the upper tail."""
        q = _f64(q)
        above = (1 - self.pi) * float(self.base.sf(0.0))  # P(X > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            upper = self.base.isf(q / (1 - self.pi))
            lower = self.base.isf((q - self.pi) / (1 - self.pi))
        out = np.where(q < above, upper, np.where(q < above + self.pi, 0.0, lower))
        return np.where((q < 0) | (q > 1) | np.isnan(q), np.nan, out)

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        rng = np.random.default_rng(rng)
        x = self.base.sample(n, rng)
        x[rng.random(int(n)) < self.pi] = 0.0
        return x

    def interval_probs(self, edges: ArrayLike) -> np.ndarray:
        """(1 - pi) times the base cell probabilities, plus pi in the cell (edges[i], edges[i+1]]
        that contains 0 (the same half-open convention as the continuous part and the cdf; none
        when 0 lies outside the edges)."""
        e = _f64(edges).ravel()
        out = (1 - self.pi) * self.base.interval_probs(e)
        i = int(np.searchsorted(e, 0.0, side="left")) - 1
        if 0 <= i < out.size:
            out[i] += self.pi
        return out

    @classmethod
    def fit(cls, x: ArrayLike, loc: str | float = "fit", method: str = "mle",  # type: ignore[override]
            nan_policy: str = "raise", family: str = "gennorm") -> ZeroInflated:
        """pi = fraction of exact zeros, `family` fitted (`Family.fit`) on the non-zeros."""
        base = FAMILIES[family_name(family).removeprefix("zi-")]
        v, _ = prepare(x, nan_policy)
        nonzero = v[v != 0]
        if len(v) == 0 or len(nonzero) == 0:
            raise ValueError(f"zi-{base.name} fit is degenerate: "
                             + (f"all_zero: all {len(v)} entries are exactly 0" if len(v) else "empty"))
        return cls(base.fit(nonzero, loc=loc, method=method), (len(v) - len(nonzero)) / len(v))


FAMILIES: dict[str, type[Family]] = {"normal": Normal, "laplace": Laplace, "gennorm": GenNorm, "t": StudentT}
_ALIASES = {"gaussian": "normal", "norm": "normal", "generalized-normal": "gennorm", "ggd": "gennorm",
            "student-t": "t", "studentt": "t", "student": "t"}


def family_name(name: str) -> str:
    """Canonical family name ('normal', 'laplace', 'gennorm', 't', or 'zi-' + one of them)."""
    key = str(name).strip().lower()
    zi = key.startswith("zi-")
    key = key.removeprefix("zi-")
    key = _ALIASES.get(key, key)
    if key not in FAMILIES:
        known = ", ".join(sorted(FAMILIES)) + " (and zi-<name> for the zero-inflated variants)"
        raise ValueError(f"unknown family {name!r}; known: {known}")
    return f"zi-{key}" if zi else key
