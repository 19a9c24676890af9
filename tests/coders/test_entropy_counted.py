"""Sizes without encoding and from the encoder itself: `huffman_size` (from the symbol histogram per
lane), `encode_counted` (one encode gives the blob and its bits), and the `SymbolHistogram` counts
that replace the per-entry passes; each against the per-entry definition it replaces, exactly."""

import numpy as np
import pytest

import coders.models.histogram as histogram_module
from coders.entropy import code_length, coded_cross_entropy, decode, encode, huffman_code
from coders.entropy.huffman import _LUT_MAX_LEN, DOUBLING_MAX_BITS, WINDOW_BITS
from coders.entropy.stream import encode_counted, huffman_size, table_indices
from coders.models import ProbabilityModel, empirical_entropy, histogram_model
from coders.models.codelength import SymbolCounts
from coders.models.histogram import SymbolHistogram
from coders.quantizers import UniformQuantizer


def _inputs(most: int = 1 << 30):
    """(name, symbols) of many shapes: empty, tiny, lane and chunk edges, heavy tails, int64 edges
    (at most `most` symbols each)."""
    rng = np.random.default_rng(7)
    out = [("empty", np.zeros(0, dtype=np.int64)), ("one", np.array([3])), ("const", np.full(5000, -2))]
    for n in (7, 4095, 4096, 4097, 3 * 4096, 3 * 4096 + 5, 50_001):
        out.append((f"laplace{n}", np.rint(rng.laplace(size=n) * 3).astype(np.int64)))
    out.append(("cauchy", np.clip(np.rint(rng.standard_cauchy(20_000) * 2), -5000, 5000).astype(np.int64)))
    out.append(("edges", np.array([np.iinfo(np.int64).min, 0, 1, np.iinfo(np.int64).max] * 300)))
    out.append(("uint", rng.integers(0, 300, 9000)))
    return [(name, s) for name, s in out if s.size <= most]


def _models(s, rng):
    """Models of s: its histogram, a mismatched histogram (escapes), a narrow window (escapes), a
    table with probabilities at the floor (codes longer than the window and the 20-bit LUT)."""
    other = np.rint(rng.laplace(size=2000)).astype(np.int64)
    out = [histogram_model(other), histogram_model(other, max_table=5)]
    if s.size:
        out += [histogram_model(s), histogram_model(s, max_table=3)]
        lo = int(np.clip(np.median(s), -(2**40), 2**40))
        p = np.full(40, 2.0**-30)
        p[:3] = 1.0
        out.append(ProbabilityModel("skewed", lo - 1, np.append(p, 1e-9), 0))
    return out


LAYOUTS = [(1 << 20, 4096), (4096, 4096), (5000, 4096), (1000, 64), (37, 5), (3, 1)]


@pytest.mark.parametrize("chunk_size,lane", LAYOUTS)
def test_huffman_size_is_the_blob_for_every_input_model_and_layout(chunk_size, lane):
    rng = np.random.default_rng(chunk_size + lane)
    for name, s in _inputs(most=60_000 if chunk_size >= 1000 else 5000):
        hist = SymbolHistogram(s)
        for m in _models(s, rng):
            bits, nbytes = huffman_size(hist, m, chunk_size=chunk_size, lane=lane)
            blob, real = encode_counted(s, m, "huffman", chunk_size=chunk_size, lane=lane)
            want = code_length(s, m, "huffman", include_side=False, chunk_size=chunk_size, lane=lane)
            assert bits == real == want, (name, m.name)
            assert nbytes == len(blob), (name, m.name)
            assert blob == encode(s, m, "huffman", chunk_size=chunk_size, lane=lane)


def test_huffman_size_without_lane_counts_or_histogram(monkeypatch):
    """The per-entry fallbacks (too many lane cells; too wide an alphabet) give the same sizes."""
    rng = np.random.default_rng(3)
    cases = [(s, m) for _, s in _inputs(most=20_000) for m in _models(s, rng)]
    want = [huffman_size(SymbolHistogram(s), m, chunk_size=5000, lane=64) for s, m in cases]
    monkeypatch.setattr(histogram_module, "LANE_COUNTS_MAX", 0)
    assert [huffman_size(SymbolHistogram(s), m, chunk_size=5000, lane=64) for s, m in cases] == want
    monkeypatch.setattr(histogram_module, "HISTOGRAM_MAX_RANGE", 0)
    for (s, m), w in zip(cases, want, strict=True):
        h = SymbolHistogram(s)
        assert h.counts is None and huffman_size(h, m, chunk_size=5000, lane=64) == w
        blob, bits = encode_counted(s, m, "huffman", chunk_size=5000, lane=64)
        assert (bits, len(blob)) == w


@pytest.mark.parametrize("coder", ["ans", "range", "huffman", "zstd-3"])
def test_encode_counted_is_encode_and_code_length(coder):
    rng = np.random.default_rng(11)
    for _, s in _inputs():
        for m in _models(s, rng):
            model = m if coder != "zstd-3" else None
            blob, bits = encode_counted(s, model, coder, chunk_size=4097)
            assert blob == encode(s, model, coder, chunk_size=4097)
            assert bits == code_length(s, model, coder, include_side=False, chunk_size=4097)
            if model is not None:  # the shared indices give the same blob
                idx = table_indices(s, m, SymbolHistogram(s))
                assert np.array_equal(idx[0], m.indices(s))
                assert encode_counted(s, m, coder, chunk_size=4097, indices=idx) == (blob, bits)
            assert np.array_equal(decode(blob, model, s.size, coder), s)


def test_histogram_counts_are_the_per_entry_ones():
    rng = np.random.default_rng(5)
    q = UniformQuantizer(scale_mult=0.5)
    qz = q.quantize(rng.laplace(size=30_000).astype(np.float32))
    for _, s in _inputs() + [("quantized", qz.symbols)]:
        hist = SymbolHistogram(s)
        assert hist.entropy() == empirical_entropy(s) == empirical_entropy(hist)
        for m in _models(s, rng):
            assert np.array_equal(hist.table_counts(m), np.bincount(m.indices(s), minlength=m.table_size))
            # exactly the same floats, not just close: the bits columns of a report rest on them
            assert m.ideal_bits(hist) == m.ideal_bits(s)
            assert m.cross_entropy(hist) == m.cross_entropy(s)
            for coder in ("ans", "huffman"):
                assert coded_cross_entropy(hist, m, coder) == coded_cross_entropy(s, m, coder)
        for max_table in (3, 1 << 16):
            a, b = histogram_model(hist, max_table=max_table), histogram_model(s, max_table=max_table)
            assert a.lo == b.lo and a.side_bits == b.side_bits and np.array_equal(a.probs, b.probs)
    s = qz.symbols
    hist = SymbolHistogram(s)
    for lo, hi in ((int(s.min()), int(s.max())), (-3, 2), (int(s.max()) + 1, int(s.max()) + 4)):
        a, b = SymbolCounts.of(hist, qz, lo, hi), SymbolCounts.of(s, qz, lo, hi)
        assert np.array_equal(a.counts, b.counts) and a.n == b.n


def test_huffman_window_decode_roundtrips_long_codes_and_long_streams():
    """Streams above the doubling size decode by windows; codes longer than the window and than
    the 20-bit lookup table take the one-code path."""
    rng = np.random.default_rng(9)
    p = 2.0 ** -np.arange(1.0, 61.0)  # geometric: code lengths 1, 2, 3, ... up to the floor
    m = ProbabilityModel("long", 0, np.append(p, 2.0**-60), 0)
    assert huffman_code(m).max_len > max(WINDOW_BITS, _LUT_MAX_LEN)
    s = np.minimum(rng.geometric(0.5, size=300_000) - 1, 59)
    s[rng.choice(s.size, 500, replace=False)] = rng.integers(20, 60, 500)  # rare long codes
    s[:3] = [61, -5, 59]  # escapes too
    for lane in (4096, 1000):
        blob = encode(s, m, "huffman", lane=lane)
        assert 8 * len(blob) > DOUBLING_MAX_BITS
        assert np.array_equal(decode(blob, m, s.size, "huffman", lane=lane), s)
        short = s[:4000]  # a single lane of the window path
        assert np.array_equal(decode(encode(short, m, "huffman", lane=8192), m, short.size, "huffman",
                                     lane=8192), short)
    # long codes on average (~12 bits, above a third of the window): one symbol per lane and pass
    wide = rng.integers(-2048, 2048, 80_000)
    for model in (histogram_model(wide), m):
        blob = encode(wide, model, "huffman")
        assert 8 * len(blob) > DOUBLING_MAX_BITS and 3 * 8 * len(blob) > WINDOW_BITS * wide.size
        assert np.array_equal(decode(blob, model, wide.size, "huffman"), wide)
