"""code_capture at scale: verify modes, the process pool, records with NaN skipped (issue 13)."""

import numpy as np
import pandas as pd
import pytest

import captures.engine as engine
import coders.report as report
from coders import bits_per_entry, code_capture
from coders.quantizers import UniformQuantizer
from coders.report import TOTAL

MODELS = ["histogram", "normal", "laplace", "gennorm"]
CODERS = ["ans", "huffman", "zstd-3"]
TIMING = ["encode_MBps", "decode_MBps", "encode_Meps", "decode_Meps", "quantize_s", "model_s"]


@pytest.fixture(scope="module")
def x():
    rng = np.random.default_rng(3)
    return (rng.laplace(size=30_000) * 1e-3).astype(np.float32)


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    captures = pytest.importorskip("captures")
    rng = np.random.default_rng(5)
    grads = {step: {"a.weight": (rng.laplace(size=(60, 100)) * (1 + step)).astype(np.float32),
                    "b.weight": rng.standard_normal((40, 50)).astype(np.float32),
                    "c.bias": rng.laplace(size=300).astype(np.float32)}
             for step in (0, 1, 2)}
    path = tmp_path_factory.mktemp("cap") / "capture"
    captures.write_capture(path, grads)
    return path


def _decoded(df: pd.DataFrame) -> pd.Series:
    return df["decode_MBps"].notna()


def test_verify_modes_give_the_same_bits_and_decode_what_they_say(x):
    q = UniformQuantizer(scale_mult=0.5)
    full = bits_per_entry(x, q, MODELS, CODERS, verify=True)
    sample = bits_per_entry(x, q, MODELS, CODERS, verify="sample")
    none = bits_per_entry(x, q, MODELS, CODERS, verify=False)
    bits = full.columns.difference(TIMING)
    pd.testing.assert_frame_equal(full[bits], sample[bits])
    pd.testing.assert_frame_equal(full[bits], none[bits])
    assert _decoded(full).all()
    assert not _decoded(none).any()
    # "sample": each entropy coder decodes exactly one model's blob; zstd is always checked
    for coder in ("ans", "huffman"):
        assert _decoded(sample[sample["coder"] == coder]).sum() == 1
    assert _decoded(sample[sample["coder"] == "zstd-3"]).all()
    # the draw is seeded: the same rows again, and another seed can pick other models
    again = bits_per_entry(x, q, MODELS, CODERS, verify="sample")
    assert (_decoded(again) == _decoded(sample)).all()
    picks = {tuple(_decoded(bits_per_entry(x, q, MODELS, ["ans"], verify="sample", verify_seed=s)))
             for s in range(8)}
    assert len(picks) > 1


@pytest.mark.parametrize("verify", [True, "sample"])
@pytest.mark.parametrize("coder", ["ans", "huffman", "zstd-3"])
def test_a_wrong_decode_is_reported_in_every_decoding_mode(x, monkeypatch, verify, coder):
    monkeypatch.setattr(report, "HUFFMAN_SAMPLE_LANES", 16)  # "sample" decodes x's blobs whole
    real = report.decode

    def corrupt(blob, model, n, name):
        out = np.array(real(blob, model, n, name), copy=True)
        out[n // 2] += 1
        return out

    monkeypatch.setattr(report, "decode", corrupt)
    with pytest.raises(RuntimeError, match="decoded symbols differ"):
        bits_per_entry(x, None, MODELS, [coder], verify=verify)
    bits_per_entry(x, None, MODELS, [coder], verify=False)  # nothing decoded, nothing to report


@pytest.mark.parametrize("verify", [True, "sample"])
@pytest.mark.parametrize("wrong", [(1, 0), (0, 1)])
def test_a_wrong_computed_huffman_size_is_reported_when_its_blob_is_built(x, monkeypatch, verify, wrong):
    """Huffman rows take their bits from the histogram; a blob that is built (every one with
    verify=True, the sampled one with "sample" when it is no longer than its window) must have
    exactly those bits and bytes."""
    monkeypatch.setattr(report, "HUFFMAN_SAMPLE_LANES", 16)
    real = report.huffman_size

    def off(h, m):
        bits, nbytes = real(h, m)
        return bits + wrong[0], nbytes + wrong[1]

    monkeypatch.setattr(report, "huffman_size", off)
    with pytest.raises(RuntimeError, match="computed"):
        bits_per_entry(x, None, MODELS, ["huffman"], verify=verify)
    bits_per_entry(x, None, MODELS, ["huffman"], verify=False)  # no blob built, nothing to compare


def test_which_huffman_rows_build_their_blob(x):
    """verify=True encodes (and decodes) every blob; "sample" only the one it decodes; ANS always
    encodes (its bits are the encoder's)."""
    full = bits_per_entry(x, None, MODELS, ["ans", "huffman"], verify=True)
    sample = bits_per_entry(x, None, MODELS, ["ans", "huffman"], verify="sample")
    assert full["encode_MBps"].notna().all()
    assert sample.loc[sample["coder"] == "ans", "encode_MBps"].notna().all()
    huff = sample[sample["coder"] == "huffman"]
    assert (huff["encode_MBps"].notna() == huff["decode_MBps"].notna()).all()
    assert huff["encode_MBps"].notna().sum() == 1


def test_a_wrong_decode_is_reported_by_code_capture(capture, monkeypatch):
    real = report.decode
    monkeypatch.setattr(report, "decode", lambda b, m, n, c: real(b, m, n, c)[::-1].copy())
    with pytest.raises(RuntimeError, match="decoded symbols differ"):
        code_capture(capture, models=["histogram"], coders=["ans"])  # the default, "sample"


def test_bad_verify_and_jobs_are_refused(x, capture):
    with pytest.raises(ValueError, match="verify must be one of"):
        bits_per_entry(x, verify="some")
    with pytest.raises(ValueError, match="verify must be one of"):
        code_capture(capture, verify=1)
    with pytest.raises(ValueError, match="jobs must be"):
        code_capture(capture, jobs=0)


@pytest.mark.parametrize("verify", [True, "sample"])
def test_pool_table_equals_serial(capture, verify):
    serial = code_capture(capture, models=MODELS, coders=["ans", "huffman"], verify=verify, jobs=1)
    pool = code_capture(capture, models=MODELS, coders=["ans", "huffman"], verify=verify, jobs=2)
    assert len(serial) == len(pool) and set(serial["layer"]) == {"a.weight", "b.weight", "c.bias", TOTAL}
    cols = serial.columns.difference(TIMING)
    pd.testing.assert_frame_equal(serial[cols], pool[cols])
    # the same blobs are decoded (the per-record draw does not depend on the process)
    pd.testing.assert_series_equal(_decoded(serial), _decoded(pool))


def test_pool_default_is_serial_below_the_threshold(capture, monkeypatch):
    def no_pool(*a, **k):
        raise AssertionError("a pool was started for a small capture")

    monkeypatch.setattr(engine, "ProcessPoolExecutor", no_pool)
    df = code_capture(capture, models=["histogram"], coders=["ans"], jobs=None, select=False)
    assert (df["layer"] == TOTAL).sum() == 3
    # above the threshold the default is a pool of every CPU
    started = []
    monkeypatch.setattr(engine, "ProcessPoolExecutor", lambda n, **k: started.append(n) or no_pool())
    monkeypatch.setattr(report, "POOL_MIN_ENTRIES", 1)
    monkeypatch.setattr(report.os, "cpu_count", lambda: 2)
    with pytest.raises(AssertionError, match="a pool was started"):
        code_capture(capture, models=["histogram"], coders=["ans"], jobs=None)
    assert started == [2]


def test_verify_sample_draws_differ_across_records(capture):
    df = code_capture(capture, models=MODELS, coders=["ans"], verify="sample", select=False)
    layers = df[df["layer"] != TOTAL]
    chosen = layers[_decoded(layers)].groupby(["step", "layer"])["model"].agg(list)
    assert (chosen.map(len) == 1).all() and len(chosen) == 9  # one blob decoded per record
    assert chosen.map(tuple).nunique() > 1


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_nan_record_is_skipped_and_the_others_coded(tmp_path, jobs):
    captures = pytest.importorskip("captures")
    rng = np.random.default_rng(9)
    bad = rng.laplace(size=(20, 50)).astype(np.float32)
    bad[3, 7] = np.nan
    bad[4, 0] = np.inf
    grads = {0: {"a.weight": rng.laplace(size=(20, 50)).astype(np.float32), "b.weight": bad},
             1: {"a.weight": rng.laplace(size=(20, 50)).astype(np.float32),
                 "b.weight": rng.laplace(size=(20, 50)).astype(np.float32)}}
    captures.write_capture(tmp_path / "cap", grads)
    df = code_capture(tmp_path / "cap", models=["histogram", "laplace"], coders=["ans"], jobs=jobs)
    msg = "skipped: 1 NaN, 1 +Inf of 1000 entries (first at flat index 157)"
    assert df.attrs["errors"] == [(0, "b.weight", msg)]
    coded = set(map(tuple, df.loc[df["layer"] != TOTAL, ["step", "layer"]].drop_duplicates().to_numpy()))
    assert coded == {(0, "a.weight"), (1, "a.weight"), (1, "b.weight")}
    assert df["bits_per_entry"].notna().all()
    # the step with the skipped record totals its coded layer only
    tot0 = df[(df["layer"] == TOTAL) & (df["step"] == 0)]
    assert (tot0["n"] == 1000).all()
    clean = code_capture(tmp_path / "cap", models=["histogram", "laplace"], coders=["ans"], steps=[1])
    assert clean.attrs["errors"] == []


def _pack_bits_before_fusing(values, lengths, masked=False):
    """pack_bits as it was before the neighbour fusion (commit 17ac66a): the reference bytes
    (it always masks, so `masked` changes nothing here)."""
    values = np.asarray(values, dtype=np.uint64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if values.size == 0:
        return np.zeros(0, dtype=np.uint8), 0
    ends = np.cumsum(lengths)
    total = int(ends[-1])
    starts = ends - lengths
    w = starts >> 6
    sh = 64 - (starts & 63) - lengths
    ul = np.minimum(lengths, 63).astype(np.uint64)
    mask = np.where(lengths >= 64, np.uint64(0xFFFFFFFFFFFFFFFF), (np.uint64(1) << ul) - np.uint64(1))
    vals = values & mask
    fits = sh >= 0
    contrib = np.where(fits, vals << np.maximum(sh, 0).astype(np.uint64),
                       vals >> np.maximum(-sh, 0).astype(np.uint64))
    words = np.zeros((total + 63) // 64 + 1, dtype=np.uint64)
    firsts = np.concatenate([[0], np.flatnonzero(np.diff(w)) + 1])
    words[w[firsts]] = np.add.reduceat(contrib, firsts)
    sp = np.flatnonzero(~fits)
    if sp.size:
        words[w[sp] + 1] |= vals[sp] << (64 + sh[sp]).astype(np.uint64)
    return words.astype(">u8").view(np.uint8)[: (total + 7) // 8], total


@pytest.mark.parametrize("max_len", [1, 3, 8, 20, 32, 33, 64])
@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1000, 4097])
def test_pack_bits_bytes_equal_the_unfused_packing(max_len, n):
    from coders.entropy.bitpack import pack_bits, unpack_bits

    rng = np.random.default_rng(max_len * 10_000 + n)
    for lo in (0, max_len):  # mixed lengths (zeros included), and every field of the same length
        lengths = rng.integers(min(lo, max_len), max_len + 1, size=n)
        # odd values with bits above each length: the mask must drop them
        values = rng.integers(0, 2**63, size=n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        got, bits = pack_bits(values, lengths)
        ref, ref_bits = _pack_bits_before_fusing(values, lengths)
        assert bits == ref_bits == int(lengths.sum())
        assert got.tobytes() == ref.tobytes()
    if max_len <= 32:  # and it reads back: fixed width fields
        vals = rng.integers(0, 2**max_len, size=n, dtype=np.uint64)
        packed, _ = pack_bits(vals, np.full(n, max_len))
        np.testing.assert_array_equal(unpack_bits(packed, max_len, n), vals)


def test_huffman_blob_equals_the_unfused_packing(monkeypatch):
    import coders.entropy.huffman as huffman
    from coders import histogram_model
    from coders.entropy import decode, encode

    rng = np.random.default_rng(2)
    s = np.round(rng.laplace(size=50_000) * 3).astype(np.int64)
    model = histogram_model(s)
    blob = encode(s, model, "huffman")
    monkeypatch.setattr(huffman, "pack_bits", _pack_bits_before_fusing)
    assert encode(s, model, "huffman") == blob
    np.testing.assert_array_equal(decode(blob, model, s.size, "huffman"), s)


def _bits_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Every column but the timings (rates and seconds)."""
    timing = [c for c in df.columns if c.endswith(("MBps", "Meps", "_s"))]
    return df.drop(columns=timing).reset_index(drop=True)


def test_a_tensor_is_quantized_as_torch_ops_and_codes_to_the_same_bits(x):
    torch = pytest.importorskip("torch")
    host = bits_per_entry(x, verify="sample", select=True)
    tensor = bits_per_entry(torch.from_numpy(np.ascontiguousarray(x)), verify="sample", select=True)
    pd.testing.assert_frame_equal(_bits_columns(tensor), _bits_columns(host), check_exact=True)


def test_a_device_that_is_not_there_is_refused_in_one_line(capture):
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="unknown device 'nonsense'"):
        code_capture(capture, steps=[0], device="nonsense")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available here"):
            code_capture(capture, steps=[0], device="cuda")


@pytest.mark.cuda
def test_code_capture_on_cuda_gives_the_host_bits(capture):
    host = code_capture(capture, verify=False)
    dev = code_capture(capture, verify=False, device="cuda")
    np.testing.assert_allclose(dev["bits_per_entry"], host["bits_per_entry"], rtol=1e-6)
    np.testing.assert_allclose(dev["mse"], host["mse"], rtol=1e-6)


@pytest.fixture()
def small_window(monkeypatch):
    """verify="sample" checks a window of 4096 symbols (ANS) and of 2 lanes (8192, Huffman: the
    default) of the 30k-entry tensor."""
    monkeypatch.setattr(report, "SAMPLE_WINDOW", 4096)
    assert report.HUFFMAN_SAMPLE_LANES == 2


def test_sample_window_checks_a_window_and_keeps_the_bits(x, small_window):
    q = UniformQuantizer(scale_mult=0.5)
    full = bits_per_entry(x, q, MODELS, CODERS, verify=True)
    sample = bits_per_entry(x, q, MODELS, CODERS, verify="sample")
    bits = full.columns.difference(TIMING)
    pd.testing.assert_frame_equal(full[bits], sample[bits])
    for coder in ("ans", "huffman"):
        rows = sample[sample["coder"] == coder]
        assert _decoded(rows).sum() == 1
    huff = sample[sample["coder"] == "huffman"]
    assert (huff["encode_MBps"].notna() == huff["decode_MBps"].notna()).all()


@pytest.mark.parametrize("coder", ["ans", "huffman"])
def test_a_wrong_window_decode_is_reported(x, monkeypatch, small_window, coder):
    if coder == "ans":
        real = report.decode_prefix

        def corrupt(*a, **k):
            out = np.array(real(*a, **k), copy=True)
            out[len(out) // 2] += 1
            return out

        monkeypatch.setattr(report, "decode_prefix", corrupt)
    else:
        cls = type(report.make_coder("huffman"))
        real = cls.decode_chunk
        monkeypatch.setattr(cls, "decode_chunk", lambda self, *a: real(self, *a)[::-1].copy())
    monkeypatch.setattr(report, "decode", lambda *a: pytest.fail("a whole blob was decoded"))
    with pytest.raises(RuntimeError, match="decoded symbols differ in"):
        bits_per_entry(x, None, MODELS, [coder], verify="sample")


def test_a_wrong_computed_huffman_window_size_is_reported(x, monkeypatch, small_window):
    real = report.huffman_window_size
    monkeypatch.setattr(report, "huffman_window_size", lambda *a: (real(*a)[0] + 1, real(*a)[1]))
    with pytest.raises(RuntimeError, match="computed"):
        bits_per_entry(x, None, MODELS, ["huffman"], verify="sample")
    bits_per_entry(x, None, MODELS, ["huffman"], verify=False)
