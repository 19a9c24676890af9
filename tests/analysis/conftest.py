"""Small synthetic DataFrames in the shapes of the stage contracts (ARCHITECTURE.md)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

LAYERS = ["conv1.weight", "conv1.bias", "fc.weight", "fc.bias"]
STEPS = [0, 25, 50]


@pytest.fixture(scope="session")
def layers():
    """Layer names of the fixtures, in model order."""
    return list(LAYERS)


@pytest.fixture(scope="session")
def steps():
    """Recorded steps of the fixtures."""
    return list(STEPS)


@pytest.fixture(scope="session")
def sample():
    """GenNorm(beta=0.8) gradient-like sample and its fit rows for three families."""
    rng = np.random.default_rng(0)
    x = stats.gennorm(0.8, scale=1e-3).rvs(20_000, random_state=rng)
    b, loc, s = stats.gennorm.fit(x[:4000])
    fits = pd.DataFrame([
        {"family": "normal", "loc": x.mean(), "scale": x.std(), "beta": np.nan},
        {"family": "laplace", "loc": np.median(x), "scale": np.abs(x - np.median(x)).mean(), "beta": np.nan},
        {"family": "gennorm", "loc": loc, "scale": s, "beta": b},
    ])
    return x, fits


@pytest.fixture(scope="session")
def fits_frame():
    """fit_capture-shaped DataFrame: step, layer, rank, family, params, goodness columns, best."""
    rng = np.random.default_rng(1)
    rows = []
    for step in STEPS:
        for layer in LAYERS:
            beta = 0.6 + 0.1 * LAYERS.index(layer) + 0.002 * step
            for fam, b, bic in (("normal", 2.0, 30.0), ("laplace", 1.0, 10.0), ("gennorm", beta, 0.0)):
                rows.append({"step": step, "layer": layer, "rank": 0, "family": fam, "beta": b, "loc": 0.0,
                             "scale": 1e-3, "loglik": -bic, "aic": bic, "bic": bic, "n": 1000,
                             "ks": rng.uniform(0, 0.05), "ad": 1.0, "w1": 1e-5, "nll_bits": 3.0,
                             "tail_log10_1e-02": rng.normal(0, 0.1), "tail_log10_1e-03": rng.normal(0, 0.3),
                             "tail_log10_1e-04": rng.normal(0, 0.5), "best": fam == "gennorm", "flags": ""})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def bits_frame():
    """code_capture-shaped DataFrame: layer, step, model, coder, bits columns."""
    rows = []
    for step in STEPS:
        for i, layer in enumerate(LAYERS):
            h = 3.0 + 0.25 * i
            for model, gap in (("histogram", 0.05), ("normal", 0.4), ("laplace", 0.2), ("gennorm", 0.02)):
                for coder, extra in (("ans", 0.0), ("huffman", 0.04)):
                    bpe = h + gap + extra
                    rows.append({"layer": layer, "step": step, "model": model, "coder": coder, "n": 1000,
                                 "payload_bits_per_entry": bpe - 0.01, "side_bits_per_entry": 0.01,
                                 "bits_per_entry": bpe, "entropy": h, "cross_entropy": h + gap,
                                 "gap_entropy": bpe / h - 1, "gap_cross_entropy": bpe / (h + gap) - 1,
                                 "encode_MBps": 100.0, "decode_MBps": 50.0})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def rd_frame():
    rows = []
    for name, shift in (("uniform + gennorm/ans", 0.0), ("uniform + laplace/ans", 0.2)):
        for p in (0.1, 0.5, 1.0, 2.0):
            rows.append({"name": name, "kind": "quantizer", "param": p, "layer": "fc.weight",
                         "bits_per_entry": 5.0 - np.log2(p) + shift, "rel_error": 0.3 * p})
    for name, bpe, err in (("bf16", 16.0, 0.003), ("topk-1%", 0.64, 0.8), ("sign", 1.0, 0.6)):
        rows.append({"name": name, "kind": "compressor", "param": np.nan, "layer": "fc.weight",
                     "bits_per_entry": bpe, "rel_error": err})
    df = pd.DataFrame(rows)
    # the per-layer sums that analysis.compare.aggregate_rd pools (one layer of 1000 entries, ||x|| = 1)
    return df.assign(n=1000, bits=df["bits_per_entry"] * 1000, sq_err=df["rel_error"] ** 2, sq_norm=1.0)


@pytest.fixture(scope="session")
def history_frame():
    rows = []
    for method, rate, bits, it in (("bf16", 0.05, 16e5, 0.02), ("powersgd", 0.04, 3e4, 0.01),
                                   ("signum-mv", 0.03, 1e5, 0.012)):
        for step in range(1, 51):
            metric = 1 - 0.9 * np.exp(-rate * step) if step % 10 == 0 else np.nan
            rows.append({"method": method, "step": step, "loss": 1 / step, "metric": metric, "bits_up": bits,
                         "bits_down": bits, "bits_wire": bits, "compress_s": 0.0, "decompress_s": 0.0,
                         "step_s": 0.1, "time_s": step * it})
    return pd.DataFrame(rows)
