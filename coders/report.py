"""Achieved bits per entry: quantize -> model -> entropy coder, with every limit and gap alongside.

`bits_per_entry(x, quantizer, models, coders)` codes one tensor and returns one row per
(model, coder): payload and side bits per entry (shown separately), the empirical entropy of the
symbols (the limit for any model), the cross-entropy under the model (the limit for that model),
the relative gaps, and encode/decode throughput. `verify` says what is decoded and checked:
- True (the default of `bits_per_entry` and of the tests): every blob is decoded whole and must
  equal the symbols; every Huffman blob is built and its payload bits and bytes must equal the
  computed ones;
- "sample" (the default of `code_capture`): per tensor and entropy coder, one model drawn with a
  seeded generator (the first built at or after a drawn position), and of its stream one window
  of at most `SAMPLE_WINDOW` (2^16) symbols for ANS / range, `HUFFMAN_SAMPLE_LANES` lanes (2^13
  symbols) for Huffman, inside one drawn chunk (`sample_window`; a stream no longer than its
  window is checked whole, as with True). ANS / range: the very blob whose bits are
  reported is opened (header, model fingerprint, crc32 of every byte) and its drawn chunk decoded
  from its start for the window's length (`decode_prefix`); the table indices must equal the
  symbols' (escaped symbols as the escape entry; the escape section is covered by the crc32 only).
  Huffman: the window's lanes are coded as one chunk, whose bits and bytes must equal those
  computed from the same lane histograms that give the row's bits (`huffman_window_size`), and
  decoded back to the window's indices; zstd rows are always decoded whole;
- False: nothing is decoded and no Huffman blob built.
A mismatch raises RuntimeError in every mode that decodes. Rows where nothing is decoded have NaN
decode rates; a windowed row's encode (Huffman) and decode rates are over its window. Every bits
column is the same in the three modes. Huffman's bits need no encode: its code lengths are fixed
per symbol, so they follow from the symbol histogram per lane (`coders.entropy.stream.huffman_size`);
its blob (or window) is built only to be checked, so a Huffman row that is not checked has NaN
encode rates too. ANS / range bits are the encoder's own (`encode_counted`: one encode per model
gives the blob and its bits).
`code_capture(capture, ...)` runs it per (step, layer) of a capture and adds, per step, a
whole-model total (layer `TOTAL`) with the bf16 raw size (16 bits per entry) as the baseline
ratio; `jobs=N` codes the records in a pool of N processes (same table as serial). Per record
the quantization, one symbol histogram (`SymbolHistogram`: the entropy, every table's counts,
cross-entropies, escape bits, the codebook fits and the Huffman sizes come from its counts) and one
model table per model spec (`Codebooks`, its Huffman code cached on the model) are computed once
and shared by every coder; so are the table indices of each table.

Column meanings (bits are per entry of x):
- `payload_bits_per_entry`: coded stream (incl. escapes), `side_bits_per_entry`: the model's
  side information (histogram counts or family parameters), `bits_per_entry` = their sum;
- `quantizer_side_bits_per_entry`: the quantizer's decoder data (step, block scales, levels),
  `total_bits_per_entry` = `bits_per_entry` + that; `ratio_vs_bf16` = 16 / `total_bits_per_entry`;
- `entropy`: plug-in entropy of the symbols; `cross_entropy`: -mean log2 of the probabilities the
  row's coder actually codes with (ANS / range: the model's table after flooring and 24-bit
  quantization, escape entry included; Huffman: 2^-code length), escapes charged their raw bits,
  so payload >= n cross_entropy - (the coder's per-stream overhead: < 64 bits per chunk for ANS /
  range, the lane table for Huffman); `model_cross_entropy`: the same under the model's floored
  float table (the model's own limit, the same for every coder);
  `gap_entropy` = bits_per_entry / entropy - 1,
  `gap_cross_entropy` = bits_per_entry / cross_entropy - 1 (NaN where the limit is 0),
  `gap_payload_cross_entropy` = payload_bits_per_entry / cross_entropy - 1 (the coder alone);
- `fit`: how a family model's parameters were found: "codelength" (fitted to the symbols under the
  quantizer's cells, the default), "values" (continuous MLE of the values, as the fit stage),
  "given" (a distribution passed in), "" (histogram); `degenerate`: the fit is on a bound, a spike
  or too small to trust (see `notes`): a real codebook, but no description of the density;
- model `best` / `best-parametric` (`coders.selection`): per coder, the row with the fewest
  bits_per_entry among all codebooks / among family models, degenerate ones included (histogram
  where no family coded the tensor), copied, the chosen model in `selected`;
- `encode_MBps` / `decode_MBps`: MB of float32 input (4 bytes per entry) per second of entropy
  coding (the model and the table indices are built beforehand), `encode_Meps` / `decode_Meps`:
  M entries per second; NaN for a blob not built / not decoded (see `verify`);
- `notes`: the flags of the family fit behind the model (e.g. beta on its bound) and, for a Huffman
  row whose payload is below the model's cross-entropy (`model_cross_entropy`),
  `HUFFMAN_BELOW_MODEL`: under a badly mis-specified model Huffman can beat ANS, which pays
  about that cross-entropy;
- rows with model `raw-float32` / `raw-bf16` / `raw-fp16` are lossless codes of the unquantized
  values in that format: zstd on the bytes (coder `zstd-<level>`) and the exponent / mantissa
  plane codec (coder `planes-ans`, `coders.floatcodec`; side bits = its histograms and header);
  model `symbols` is zstd on the symbol bytes (no model, no side bits).
"""

from __future__ import annotations

import fnmatch
import math
import os
import time
import zlib
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from coders.entropy import (
    DEFAULT_CHUNK,
    HUFFMAN_LANE,
    coded_cross_entropy,
    decode,
    decode_prefix,
    encode_counted,
    huffman_code,
    huffman_size,
    huffman_window_size,
    make_coder,
    sample_window,
    table_indices,
    zstd_raw_bits,
)
from coders.floatcodec import raw_float_rows
from coders.models import Codebooks, SymbolHistogram, is_degenerate
from coders.quantizers import UniformQuantizer, distortion, nonfinite_summary
from coders.selection import (  # noqa: F401  (re-exported: the headline lives with the report)
    BEST,
    BEST_PARAMETRIC,
    TOTAL,
    codebook_headline,
    selected_counts,
    selection_rows,
)
from coders.wire import BF16_BITS

DEFAULT_MODELS = ("histogram", "normal", "laplace", "gennorm")
DEFAULT_CODERS = ("ans", "huffman")
VERIFY_MODES = (True, "sample", False)
SAMPLE_WINDOW = 1 << 16
"""With `verify="sample"`, an ANS / range stream of more symbols than this is checked on a window
of at most this many (module doc); a shorter one is decoded whole."""
HUFFMAN_SAMPLE_LANES = 2
"""With `verify="sample"`, a Huffman stream of more than this many lanes (2 x 4096 symbols) is
checked on a window of this many whole lanes (two: the lane table is part of the check); numpy's
Huffman decoder costs ~0.6 ms per lane, constriction's ANS ~1 ms per 2^16 symbols."""
POOL_MIN_ENTRIES = 1 << 22
"""With `jobs=None`, `code_capture` codes a capture of fewer entries than this (4M) serially:
forking workers and shipping the tables back costs more than it saves on a small capture."""

COLUMNS = [
    "model", "coder", "payload_bits_per_entry", "side_bits_per_entry", "bits_per_entry", "entropy",
    "cross_entropy", "gap_entropy", "gap_cross_entropy", "encode_MBps", "decode_MBps",
    "gap_payload_cross_entropy",
    "quantizer", "n", "payload_bits", "side_bits", "quantizer_side_bits_per_entry", "total_bits_per_entry",
    "total_bits", "ratio_vs_bf16", "mse", "snr_db", "table_size", "n_escapes", "codebook_bits",
    "encode_Meps", "decode_Meps", "quantize_s", "model_s", "params", "error", "notes",
    "fit", "degenerate", "selected", "model_cross_entropy",
]

HUFFMAN_BELOW_MODEL = (
    "huffman_below_cross_entropy: Huffman's payload is below this model's cross-entropy, so the "
    "model predicts these symbols badly (see the fit flags); Huffman's integer lengths follow the "
    "order of the probabilities, not their size, so a symbol the model calls rare but that is "
    "frequent costs it a few bits where ANS / range pay the full -log2 q")
"""Why a Huffman row can beat ANS / range under the same model (a mis-specified model, not a bug)."""


def _gap(bits: float, limit: float) -> float:
    return bits / limit - 1.0 if limit > 0 else math.nan


def _timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def _rate(n: int, seconds: float, bytes_per_entry: float) -> float:
    return n * bytes_per_entry / 1e6 / seconds if seconds > 0 else math.nan


def bits_per_entry(
    x: Any,
    quantizer: Any = None,
    models: Sequence[Any] = DEFAULT_MODELS,
    coders: Sequence[str] = DEFAULT_CODERS,
    *,
    raw_baselines: bool = False,
    fit_sample: int | None = 1 << 17,
    verify: bool | str = True,
    seed: int = 0,
    fit: str = "codelength",
    loc: str | float = "fit",
    select: bool = False,
    verify_seed: int | None = None,
) -> pd.DataFrame:
    """Quantize x once, then code its symbols with every model x coder; one row each (see module doc).

    `quantizer`: any quantizer of `coders.quantizers` (default `UniformQuantizer(scale_mult=0.5)`).
    `models`: "histogram", family names for `gradstats.fit` ("normal", "laplace", "gennorm",
    "zi-gennorm", ...), distribution objects or `ProbabilityModel`s. `coders`: "ans", "range",
    "huffman", "zstd-<level>" (zstd rows appear once, with model "symbols"). A family that cannot be
    fitted (e.g. a constant layer) gives a row of NaN with the reason in `error`.
    `fit`: "codelength" (default) or "values", for family names without a ":<fit>" suffix
    (`coders.models.codebooks`); `loc`: "fit" (default, as the fit stage) or a number held fixed.
    `select`: add the `best` and `best-parametric` rows (`coders.selection`; `code_capture` does
    by default). `verify`: True, "sample" or False (module doc); with "sample" each entropy coder
    checks a window (`SAMPLE_WINDOW`) of the blob of the first model built at or after a position
    drawn from `default_rng(verify_seed)` (`verify_seed` None: `seed`), the window drawn from it too.
    """
    rows = _entry_rows(x, quantizer, models, coders, raw_baselines=raw_baselines, fit_sample=fit_sample,
                       verify=verify, seed=seed, fit=fit, loc=loc, select=select, verify_seed=verify_seed)
    return _frame(rows, COLUMNS)


def _entry_rows(x: Any, quantizer: Any, models: Sequence[Any], coders: Sequence[str], *, raw_baselines: bool,
                fit_sample: int | None, verify: bool | str, seed: int, fit: str, loc: str | float,
                select: bool, verify_seed: int | None) -> list[dict]:
    """`bits_per_entry`'s rows (dicts of `COLUMNS`); every option as `bits_per_entry` takes it."""
    if verify not in VERIFY_MODES or not isinstance(verify, (bool, str)):
        raise ValueError(f"bits_per_entry: verify must be one of {VERIFY_MODES}, got {verify!r}")
    q = quantizer if quantizer is not None else UniformQuantizer(scale_mult=0.5)
    qz, t_quant = _timed(q.quantize, x)
    s = qz.symbols
    n = s.size
    # one histogram of the symbols serves the entropy, every table's counts, cross-entropies and
    # escape bits, and the Huffman sizes (`SymbolHistogram`)
    # with Huffman among the coders its per-lane counts are needed: counted first (`SymbolHistogram`)
    huffman = any(c.lower() == "huffman" for c in coders)
    hist = SymbolHistogram(s, lanes=(DEFAULT_CHUNK, HUFFMAN_LANE) if huffman else None)
    s = hist.symbols
    h = hist.entropy()
    d = distortion(x, qz.dequantize()) if n else None
    qside = qz.side_bits / n if n else math.nan
    qname = getattr(q, "name", type(q).__name__)
    codebooks = Codebooks(qz, lambda: q.normalize(x), fit=fit, loc=loc, fit_sample=fit_sample, seed=seed,
                          histogram=hist)
    index_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def indices(model: Any) -> tuple[np.ndarray, np.ndarray]:
        """The model's table indices and escapes, once per table (models on one table share them)."""
        key = (model.lo, model.table_size)
        if key not in index_cache:
            index_cache[key] = table_indices(s, model, hist)
        return index_cache[key]
    rows: list[dict] = []

    def base(model_name: str, coder: str) -> dict:
        return {"model": model_name, "coder": coder, "quantizer": qname, "n": n, "entropy": h,
                "quantizer_side_bits_per_entry": qside, "mse": d.mse if d else math.nan,
                "snr_db": d.snr_db if d else math.nan, "quantize_s": t_quant, "error": "", "notes": "",
                "fit": "", "degenerate": False, "selected": ""}

    def finish(row: dict, payload: int, side: int, enc_s: float, dec_s: float, enc_n: int | None = None,
               dec_n: int | None = None) -> dict:
        """The bits columns, and the rates over the `enc_n` / `dec_n` symbols timed (default n)."""
        enc_n = n if enc_n is None else enc_n
        dec_n = n if dec_n is None else dec_n
        bpe = (payload + side) / n if n else math.nan
        total = bpe + qside if n else math.nan
        row.update(
            payload_bits=payload, side_bits=side,
            payload_bits_per_entry=payload / n if n else math.nan,
            side_bits_per_entry=side / n if n else math.nan, bits_per_entry=bpe,
            gap_entropy=_gap(bpe, h), total_bits_per_entry=total,
            total_bits=payload + side + qz.side_bits,
            ratio_vs_bf16=BF16_BITS / total if n and total > 0 else math.nan,
            encode_MBps=_rate(enc_n, enc_s, 4), decode_MBps=_rate(dec_n, dec_s, 4),
            encode_Meps=_rate(enc_n, enc_s, 1), decode_Meps=_rate(dec_n, dec_s, 1),
        )
        row.setdefault("gap_cross_entropy", math.nan)
        return row

    entropy_coders = [c for c in coders if not c.lower().startswith("zstd")]
    zstd_coders = [c for c in coders if c.lower().startswith("zstd")]
    # "sample": per coder, the model position from which the first built model is decoded
    draw = np.random.default_rng(seed if verify_seed is None else verify_seed)
    first_checked = {c: int(draw.integers(len(models))) if models else 0 for c in entropy_coders}
    width = {c: HUFFMAN_SAMPLE_LANES * HUFFMAN_LANE if c.lower() == "huffman" else SAMPLE_WINDOW
             for c in entropy_coders}
    windows = {c: sample_window(n, width[c], draw) for c in entropy_coders}
    huffman_coder = make_coder("huffman")
    checked: set[str] = set()
    for position, spec in enumerate(models):
        name = spec if isinstance(spec, str) else getattr(spec, "name", type(spec).__name__)
        if not entropy_coders:
            break
        try:
            model, t_model = _timed(codebooks.model, spec)
        except ValueError as err:
            for coder in entropy_coders:
                row = base(str(name), coder)
                row["error"] = str(err)
                rows.append(row)
            continue
        model_ce = model.cross_entropy(hist)
        n_esc = int(hist.table_counts(model)[-1])
        for coder in entropy_coders:
            ce = coded_cross_entropy(hist, model, coder) if n else 0.0
            row = base(str(name), coder)
            row.update(cross_entropy=ce, model_cross_entropy=model_ce, model_s=t_model,
                       table_size=model.table_size, n_escapes=n_esc, fit=model.fit,
                       degenerate=is_degenerate(model.flags),
                       params=str({k: float(f"{v:.6g}") for k, v in model.params.items()}))
            if coder.lower() == "huffman":
                row["codebook_bits"] = huffman_code(model).codebook_bits
            check = verify is True or (verify == "sample" and coder not in checked
                                       and position >= first_checked[coder])
            # "sample" on a stream longer than the window checks a window of it (module doc)
            window = windows[coder] if check and verify == "sample" and n > width[coder] else None
            enc_s = dec_s = math.nan
            enc_n = dec_n = n
            if coder.lower() == "huffman":
                # Huffman's size follows from the histogram per lane; the blob is built only to
                # be checked, and then its size must be the computed one
                payload, nbytes = huffman_size(hist, model)
                if window is not None:
                    start, stop, chunk, lane0 = window
                    vals = indices(model)[0][start:stop]
                    enc_n = dec_n = vals.size
                    (data, real), enc_s = _timed(huffman_coder.encode_chunk_counted, vals, model)
                    want = huffman_window_size(hist, model, chunk, lane0, -(-vals.size // HUFFMAN_LANE))
                    if (real, len(data)) != want:
                        raise RuntimeError(f"{coder} with model {name}: symbols {start}..{stop} code to "
                                           f"{real} bits and {len(data)} bytes, computed {want[0]} and "
                                           f"{want[1]} (a coder bug)")
                    checked.add(coder)
                    out, dec_s = _timed(huffman_coder.decode_chunk, data, model, vals.size)
                    if not np.array_equal(out, vals):
                        raise RuntimeError(f"{coder} with model {name}: decoded symbols differ in "
                                           f"{start}..{stop} (a coder bug)")
                elif check:
                    (blob, real), enc_s = _timed(encode_counted, s, model, coder, indices=indices(model))
                    if real != payload or len(blob) != nbytes:
                        raise RuntimeError(f"{coder} with model {name}: the blob has {real} payload bits "
                                           f"and {len(blob)} bytes, computed {payload} and {nbytes} "
                                           "(a coder bug)")
            else:  # ANS / range: the bits are the encoder's own
                (blob, payload), enc_s = _timed(encode_counted, s, model, coder, indices=indices(model))
                if window is not None:  # the drawn chunk's first symbols, from the blob itself
                    chunk = window[2]
                    start = chunk * DEFAULT_CHUNK
                    count = min(SAMPLE_WINDOW, n - start)
                    checked.add(coder)
                    out, dec_s = _timed(decode_prefix, blob, model, chunk, count, n, coder)
                    dec_n = count
                    if not np.array_equal(out, indices(model)[0][start : start + count]):
                        raise RuntimeError(f"{coder} with model {name}: decoded symbols differ in "
                                           f"{start}..{start + count} (a coder bug)")
            if check and window is None:
                checked.add(coder)
                out, dec_s = _timed(decode, blob, model, n, coder)
                if not np.array_equal(out, s):
                    raise RuntimeError(f"{coder} with model {name}: decoded symbols differ (a coder bug)")
            finish(row, payload, model.side_bits, enc_s, dec_s, enc_n, dec_n)
            row["gap_cross_entropy"] = _gap(row["bits_per_entry"], ce)
            row["gap_payload_cross_entropy"] = _gap(row["payload_bits_per_entry"], ce)
            notes = list(model.flags)
            if coder.lower() == "huffman" and row["payload_bits_per_entry"] < model_ce:
                notes.append(HUFFMAN_BELOW_MODEL)
            row["notes"] = "; ".join(notes)
            rows.append(row)
    if select:
        rows += selection_rows(rows)
    for coder in zstd_coders:
        row = base("symbols", coder)
        (blob, bits), enc_s = _timed(encode_counted, s, None, coder)
        dec_s = math.nan
        if verify:  # zstd decodes at GB/s: checked in both decoding modes
            out, dec_s = _timed(decode, blob, None, n, coder)
            if not np.array_equal(out, s):
                raise RuntimeError(f"{coder}: decoded symbols differ")
        finish(row, bits, 0, enc_s, dec_s)
        rows.append(row)
    if raw_baselines:
        for fmt in ("float32", "bf16"):
            for level in (3, 19):
                row = base(f"raw-{fmt}", f"zstd-{level}")
                bits, enc_s = _timed(zstd_raw_bits, x, fmt, level)
                finish(row, bits, 0, enc_s, math.nan)
                # lossless on the unquantized values: no quantizer, no symbols
                row.update(entropy=math.nan, gap_entropy=math.nan, quantizer_side_bits_per_entry=0.0,
                           total_bits_per_entry=row["bits_per_entry"], total_bits=bits,
                           ratio_vs_bf16=BF16_BITS / row["bits_per_entry"] if bits else math.nan,
                           mse=0.0 if fmt == "float32" else math.nan, snr_db=math.nan)
                rows.append(row)
        # the lossless plane codec of the raw floats (coders.floatcodec): model raw-<format>, coder
        # planes-ans; its zstd comparison rows are the ones above
        rows.extend(raw_float_rows(x, dtypes=("bf16", "fp16", "fp32"), zstd_levels=()))
    return rows


def _frame(rows: list[dict], columns: Sequence[str]) -> pd.DataFrame:
    """The rows as a frame of exactly `columns` (a missing key is NaN), as
    `pd.DataFrame(rows).reindex(columns=columns)` builds it, column by column (a third of its cost)."""
    if not rows:
        return pd.DataFrame(rows).reindex(columns=columns)
    return pd.DataFrame({c: [r.get(c, math.nan) for r in rows] for c in columns})


def _match(name: str, patterns: str | Sequence[str] | None) -> bool:
    if patterns is None:
        return True
    pats = [patterns] if isinstance(patterns, str) else list(patterns)
    return any(fnmatch.fnmatchcase(name, p) for p in pats)


def code_capture(
    capture: Any,
    quantizer: Any = None,
    models: Sequence[Any] = DEFAULT_MODELS,
    coders: Sequence[str] = DEFAULT_CODERS,
    *,
    steps: Sequence[int] | None = None,
    layers: str | Sequence[str] | None = None,
    kind: str = "grad",
    rank: int = 0,
    raw_baselines: bool = False,
    fit_sample: int | None = 1 << 17,
    progress: bool = False,
    fit: str = "codelength",
    loc: str | float = "fit",
    select: bool = True,
    verify: bool | str = "sample",
    jobs: int | None = 1,
    engine: str = "process",
    scheduler: Any = None,
    device: str = "cpu",
) -> pd.DataFrame:
    """`bits_per_entry` for every (step, layer) of a capture, plus a whole-model total per step.

    `capture`: a `Capture` or a path for `captures.open_capture`. `layers`: glob pattern(s) of
    layer names. Total rows (layer `TOTAL`) sum bits and entries over the layers of the step;
    `ratio_vs_bf16` = 16 / total bits per entry. A total is NaN when any of its layers failed.
    Note: a sampled capture codes the sampled entries only (bits per entry still apply).
    `fit`, `loc`, `select` as in `bits_per_entry`; the TOTAL rows of model `best-parametric` are
    the headline (the best parametric codebook per layer, `selected` says which;
    `codebook_headline(df)` puts them beside the histogram oracle).
    `verify`: "sample" (default; each record's coders check a window of at most 2^16 symbols
    (Huffman 2^13) of one model's blob, drawn with a seed from (step, layer)), True (every blob
    whole) or False
    (module doc).
    `jobs`: worker processes over records (1, the default: serial in this process; None: all CPUs
    for a capture of >= `POOL_MIN_ENTRIES` entries, serial below); the table equals the serial one.
    `engine` "process" (this machine) or "dask" (a cluster at `scheduler`), see `captures.engine`.
    `device`: "cpu" or a torch device ("cuda"): each record is moved there and quantized (and its
    continuous codebook fits run) as torch ops; the symbols come back for the entropy coders, which
    stay on the host. The bits equal the host run's up to rounding of the quantizer's scale.
    A record holding NaN / Inf is skipped (`coders.quantizers.nonfinite_summary`) and the others
    coded; the returned frame's `attrs["errors"]` lists (step, layer, message) of skipped records.
    """
    if verify not in VERIFY_MODES or not isinstance(verify, (bool, str)):
        raise ValueError(f"code_capture: verify must be one of {VERIFY_MODES}, got {verify!r}")
    if jobs is not None and (not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"code_capture: jobs must be an int >= 1 or None (all CPUs), got {jobs!r}")
    if str(device) != "cpu":
        _check_device(str(device))
    if isinstance(capture, (str, bytes)) or hasattr(capture, "__fspath__"):
        from captures import open_capture

        capture = open_capture(capture)
    layer_list = [name for name in capture.layers if _match(name, layers)]
    if not layer_list:
        raise ValueError(f"code_capture: no layer matches {layers!r}")
    step_list = sorted(steps) if steps is not None else list(getattr(capture, "steps", []))
    keys = [(step, layer) for step in step_list for layer in layer_list]  # the serial order
    options = dict(quantizer=quantizer, models=models, coders=coders, raw_baselines=raw_baselines,
                   fit_sample=fit_sample, fit=fit, loc=loc, select=select, verify=verify, device=str(device))
    if jobs is None:
        big = sum(_record_size(capture, k) for k in keys) >= POOL_MIN_ENTRIES
        jobs = (os.cpu_count() or 1) if big and str(device) == "cpu" else 1  # one process drives a device
    from captures.engine import map_records

    if steps is None:  # the serial iteration's checks (kind, rank, a summary-only capture), no reading
        list(capture.records(kind=kind, ranks=[rank], layers=layer_list, steps=[]))

    def arrived(_: int, got: list[Coded]) -> None:
        for step, layer, rows, _msg in got:
            if progress and rows:
                print(f"step {step} {layer}: n={int(rows[0]['n'])}", flush=True)

    coded = map_records(partial(_code_key, kind=kind, rank=rank, options=options, explicit=steps is not None),
                        keys, capture=capture, jobs=jobs, engine=engine, scheduler=scheduler,
                        sizes=[_record_size(capture, k) for k in keys], groups=[k[1] for k in keys],
                        on_result=arrived, device=str(device))
    results = [c for got in coded for c in got]
    rows = [row for _, _, got, _ in results if got for row in got]
    errors = [(step, layer, msg) for step, layer, _, msg in results if msg]
    if not rows:
        detail = f" ({len(errors)} records skipped: {errors[0][2]})" if errors else ""
        raise ValueError(f"code_capture: the capture has no records for that selection{detail}")
    # one frame of every record's rows (a frame per record and their concat cost ~2 ms a record)
    per_layer = _frame(rows, ["step", "layer", *COLUMNS])
    out = pd.concat([per_layer, _totals(per_layer)], ignore_index=True)
    out.attrs["errors"] = errors
    return out


def _record_size(capture: Any, key: tuple[int, str]) -> int:
    shape = getattr(capture, "shapes", {}).get(key[1])
    return int(np.prod(shape)) if shape is not None else 0


Coded = tuple[int, str, "list[dict] | None", str]
"""(step, layer, the record's rows or None, why it was skipped or "")."""


def _check_device(device: str) -> None:
    """ValueError unless `device` names a torch device that is there (e.g. 'cuda' with CUDA)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"code_capture: unknown device {device!r} (cpu, cuda or cuda:N): {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"code_capture: device {device!r} is not available here (no CUDA); use 'cpu'")


def _code_record(step: int, layer: str, values: Any, options: dict) -> Coded:
    """One record -> (step, layer, its rows or None, why it was skipped or "")."""
    x = np.asarray(values).ravel()
    if x.size == 0:
        return step, layer, None, ""
    bad = nonfinite_summary(x)
    if bad is not None:
        return step, layer, None, f"skipped: {bad}"
    opts = dict(options)
    device = opts.pop("device", "cpu")
    if device != "cpu":  # quantization and the continuous fits as torch ops there; coders on the host
        import torch

        x = torch.from_numpy(x).to(device)
    verify_seed = zlib.crc32(f"{step}/{layer}".encode())  # a different, reproducible draw per record
    rows = _entry_rows(x, opts.pop("quantizer"), opts.pop("models"), opts.pop("coders"), seed=0,
                       verify_seed=verify_seed, **opts)
    for row in rows:
        row["step"], row["layer"] = step, layer
    return step, layer, rows, ""


def _code_key(capture: Any, key: tuple[int, str], *, kind: str, rank: int, options: dict,
              explicit: bool) -> list[Coded]:
    """The record (step, layer) of `capture` coded, as `map_records` runs it (none if it is absent).

    With the steps not given (`explicit` False) a step this rank did not record is skipped, as the
    serial iteration over the capture's steps does; a damaged file (CaptureFileError) still raises."""
    step, layer = key
    try:
        recs = list(capture.records(kind=kind, ranks=[rank], layers=[layer], steps=[step]))
    except ValueError as exc:
        if explicit or type(exc) is not ValueError:
            raise
        return []
    return [_code_record(rec.step, rec.layer, rec.values, options) for rec in recs]


def _pooled_rate(g: pd.DataFrame, col: str) -> float:
    """MB/s over all layers of a group: total MB / total seconds (NaN if any layer lacks a rate)."""
    seconds = 4 * g["n"] / 1e6 / g[col]
    total = float(seconds.sum())
    if seconds.isna().any() or not total > 0:
        return math.nan
    return 4 * float(g["n"].sum()) / 1e6 / total


def _totals(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (step, model, coder), g in df.groupby(["step", "model", "coder"], sort=False):
        n = int(g["n"].sum())
        bad = bool(g["total_bits"].isna().any())
        total_bits = math.nan if bad else float(g["total_bits"].sum())
        payload = math.nan if bad else float(g["payload_bits"].sum())
        side = math.nan if bad else float(g["side_bits"].sum())
        qside = float((g["quantizer_side_bits_per_entry"] * g["n"]).sum())
        ent = math.nan if g["entropy"].isna().any() else float((g["entropy"] * g["n"]).sum()) / n
        ce = math.nan if g["cross_entropy"].isna().any() else float((g["cross_entropy"] * g["n"]).sum()) / n
        mce = (math.nan if g["model_cross_entropy"].isna().any()
               else float((g["model_cross_entropy"] * g["n"]).sum()) / n)
        bpe = (payload + side) / n
        tot = total_bits / n
        rows.append({
            "step": step, "layer": TOTAL, "model": model, "coder": coder, "quantizer": g["quantizer"].iloc[0],
            "n": n, "payload_bits": payload, "side_bits": side, "payload_bits_per_entry": payload / n,
            "side_bits_per_entry": side / n, "bits_per_entry": bpe, "entropy": ent, "cross_entropy": ce,
            "gap_entropy": _gap(bpe, ent), "gap_cross_entropy": _gap(bpe, ce),
            "gap_payload_cross_entropy": _gap(payload / n, ce),
            "quantizer_side_bits_per_entry": qside / n, "total_bits_per_entry": tot, "total_bits": total_bits,
            "ratio_vs_bf16": BF16_BITS / tot if tot > 0 else math.nan,
            "encode_MBps": _pooled_rate(g, "encode_MBps"), "decode_MBps": _pooled_rate(g, "decode_MBps"),
            "error": "; ".join(e for e in g["error"].fillna("") if e), "notes": "",
            "model_cross_entropy": mce, "fit": ", ".join(sorted({f for f in g["fit"].fillna("") if f})),
            "degenerate": bool(g["degenerate"].fillna(False).astype(bool).any()),
            "selected": selected_counts(g["selected"]),
        })
    return pd.DataFrame(rows)


def family_comparison(df: pd.DataFrame, coder: str = "ans", reference: str = "gennorm",
                      others: Sequence[str] = ("normal", "laplace")) -> pd.DataFrame:
    """Per (step, layer): bits per entry of each model with `coder`, and how much `reference` saves.

    Columns `saving_vs_<other>` = 1 - bits(reference) / bits(other) (fraction of the other's bits).
    """
    d = df[df["coder"] == coder]
    keys = [k for k in ("step", "layer") if k in d.columns]
    wide = d.pivot_table(index=keys or None, columns="model", values="bits_per_entry", sort=False)
    if reference not in wide.columns:
        raise ValueError(f"family_comparison: no rows for model {reference!r} with coder {coder!r}")
    for o in others:
        if o in wide.columns:
            wide[f"saving_vs_{o}"] = 1.0 - wide[reference] / wide[o]
    return wide.reset_index()
