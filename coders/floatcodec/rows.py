"""Rows of `coders.report.bits_per_entry`'s columns for lossless coding of raw floats: this codec
(`planes-ans`) and zstd on the same bytes."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from coders.entropy.zstd import RAW_CHUNK, ZstdCoder
from coders.floatcodec.blob import decode_float, encode_blob
from coders.floatcodec.formats import as_float_tensor, float_format, raw_bytes
from coders.wire import BF16_BITS

CODER_NAME = "planes-ans"
RAW_MODEL_NAMES = {"bf16": "raw-bf16", "fp16": "raw-fp16", "fp32": "raw-float32"}
"""Model names of the rows; fp32 is `raw-float32` like the zstd rows of `bits_per_entry`."""
ZSTD_CHUNK_BYTES = 4 * RAW_CHUNK
"""zstd frames of 4 MiB, the framing of `coders.entropy.zstd_raw_bits` (same bytes -> same bits)."""


def _zstd_bits(raw: bytes, level: int) -> tuple[int, float, float]:
    """zstd(level) bits of raw in 4 MiB frames, encode and decode seconds (decode checked)."""
    coder = ZstdCoder(level)
    data = np.frombuffer(raw, dtype=np.uint8)
    t0 = time.perf_counter()
    starts = range(0, len(raw), ZSTD_CHUNK_BYTES)
    frames = [coder.encode_chunk(data[a : a + ZSTD_CHUNK_BYTES]) for a in starts]
    t1 = time.perf_counter()
    back = b"".join(coder.decode_chunk(f, None, min(ZSTD_CHUNK_BYTES, len(raw) - a), np.uint8).tobytes()
                    for a, f in zip(starts, frames, strict=True))
    t2 = time.perf_counter()
    if back != raw:
        raise RuntimeError("zstd: decoded bytes differ")
    return 8 * sum(len(f) for f in frames), t1 - t0, t2 - t1


def _rate(n: int, seconds: float, bytes_per_entry: float) -> float:
    return n * bytes_per_entry / 1e6 / seconds if seconds > 0 else math.nan


def _gap(bits: float, limit: float) -> float:
    return bits / limit - 1.0 if limit > 0 else math.nan  # NaN limit compares False -> NaN


def _finish(row: dict, n: int, payload: int, side: int, enc_s: float, dec_s: float) -> dict:
    """Fill the bit and rate columns of a row (the definitions of `coders.report.bits_per_entry`)."""
    bpe = (payload + side) / n if n else math.nan
    row.update(payload_bits=payload, side_bits=side,
               payload_bits_per_entry=payload / n if n else math.nan,
               side_bits_per_entry=side / n if n else math.nan, bits_per_entry=bpe,
               total_bits_per_entry=bpe, total_bits=payload + side,
               ratio_vs_bf16=BF16_BITS / bpe if n and bpe > 0 else math.nan,
               encode_MBps=_rate(n, enc_s, 4), decode_MBps=_rate(n, dec_s, 4),
               encode_Meps=_rate(n, enc_s, 1), decode_Meps=_rate(n, dec_s, 1))
    row["gap_entropy"] = _gap(bpe, row["entropy"])
    row["gap_cross_entropy"] = _gap(bpe, row["cross_entropy"])
    row["gap_payload_cross_entropy"] = _gap(row["payload_bits_per_entry"], row["cross_entropy"])
    return row


def _rounding_error(t: torch.Tensor, ref: np.ndarray) -> tuple[float, float]:
    """MSE and SNR (dB) of the format's values t against the input ref (float64)."""
    if ref.size == 0:
        return 0.0, math.inf
    err = t.reshape(-1).double().cpu().numpy() - ref
    with np.errstate(invalid="ignore", over="ignore"):
        mse = float(np.mean(err * err))
        sig = float(np.mean(ref * ref))
    if mse == 0.0:
        return 0.0, math.inf
    snr = 10.0 * math.log10(sig / mse) if sig > 0 and math.isfinite(mse) else math.nan
    return mse, snr


def raw_float_rows(x: Any, dtypes: Sequence[str] = ("bf16", "fp16", "fp32"), *,
                   zstd_levels: Sequence[int] = (19,), verify: bool = True) -> list[dict]:
    """Rows of `coders.report.bits_per_entry`'s columns for lossless coding of x in each format.

    Per format: model `raw-bf16` / `raw-fp16` / `raw-float32`, coder `planes-ans` (this codec), then
    coder `zstd-<level>` per level on the same bytes (the format's little-endian bytes in 4 MiB
    frames, as `coders.entropy.zstd_raw_bits`). `entropy` = sum of the planes' order-0 entropies
    (the limit of a plane-wise order-0 code, except that a trailing run of a plane's first symbol
    costs constriction's ANS nothing, so a tensor ending in zeros, e.g. dead rows, can code a little
    below it), `cross_entropy` = the same with raw planes at their
    width (the limit of what was sent); `side_bits` = histograms + blob header, so bits_per_entry is
    the whole blob; mse / snr_db: the format's rounding of x (0 / inf when x is already in it);
    encode/decode_MBps count 4 bytes per entry (the column's definition), *_Meps entries per second;
    `params`: the coder chosen per plane; `notes`: "raw fallback" when the raw bytes were sent.
    """
    rows: list[dict] = []
    src = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    ref = src.reshape(-1).double().cpu().numpy()
    for spec in dtypes:
        fmt = float_format(spec)
        t = as_float_tensor(src, fmt.name)
        n = t.numel()
        t0 = time.perf_counter()
        blob, info = encode_blob(t)
        t1 = time.perf_counter()
        back = decode_float(blob)
        t2 = time.perf_counter()
        if verify and not torch.equal(back.reshape(-1).view(fmt.int_dtype),
                                      t.reshape(-1).view(fmt.int_dtype).cpu()):
            raise RuntimeError(f"float codec {fmt.name}: decoded bits differ (a codec bug)")
        mse, snr = _rounding_error(t, ref)
        common = {"model": RAW_MODEL_NAMES[fmt.name], "quantizer": "none", "n": n,
                  "quantizer_side_bits_per_entry": 0.0, "mse": mse, "snr_db": snr, "n_escapes": 0,
                  "error": "", "notes": ""}
        row = dict(common, coder=CODER_NAME, entropy=info["entropy"], cross_entropy=info["cross_entropy"],
                   params=str({p["plane"]: p["coder"] for p in info["planes"]}),
                   notes="" if info["mode"] == "planes" else "raw fallback")
        rows.append(_finish(row, n, info["payload_bits"], info["side_bits"] + info["header_bits"],
                            t1 - t0, t2 - t1))
        raw = raw_bytes(t, fmt)
        for level in zstd_levels:
            bits, enc_s, dec_s = _zstd_bits(raw, level)
            zrow = dict(common, coder=f"zstd-{level}", entropy=math.nan, cross_entropy=math.nan)
            rows.append(_finish(zrow, n, bits, 0, enc_s, dec_s))
    return rows
