"""The float codec's blob: header, crc32 seal, `encode_float` / `decode_float`, `float_code_length`.

Blob (little endian): magic "GFC1", crc32 of everything after it, dtype code, mode (0 raw, 1 planes),
ndim, the dims as LEB128 varints; raw mode: the raw bytes; planes mode: the exponent plane's
section, then per other plane the sections of its nonzero-exponent and exponent-0 entries
(`planes.sub_planes`; sections: `plane_code`). The plane coding is kept only when its whole blob
is smaller than the raw one, so a blob is never larger than the raw bytes plus the raw header.

Bits (`float_code_length`): `payload` = raw plane bytes and ANS words, `side` = the histograms
(lo, hi, counts, a constant plane's value), `header` = the rest (magic, crc, dtype, shape, plane
modes, chunk word counts); payload + side + header = 8 * len(blob) exactly.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from coders.floatcodec.formats import BY_CODE, FloatFormat, as_float_tensor, float_format, raw_bytes
from coders.floatcodec.plane_code import PlaneCode, code_plane, corrupt, decode_plane
from coders.floatcodec.planes import join_planes, merge_sub_planes, sub_planes

MAGIC = b"GFC1"
_RAW, _PLANES = 0, 1


def _leb128(v: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, least significant first, high bit set on all but the last."""
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _read_leb128(data: bytes, off: int) -> tuple[int, int]:
    v, shift = 0, 0
    while True:
        if off >= len(data) or shift > 63:
            raise corrupt("shape")
        b = data[off]
        off += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, off


def _header(fmt: FloatFormat, mode: int, shape: Sequence[int]) -> bytes:
    if len(shape) > 255:
        raise ValueError(f"float codec: at most 255 dims, got {len(shape)}")
    return bytes([fmt.code, mode, len(shape)]) + b"".join(_leb128(int(d)) for d in shape)


def _seal(body: bytes) -> bytes:
    return MAGIC + struct.pack("<I", zlib.crc32(body)) + body


def encode_blob(x: Any, dtype: Any = None, on_device: bool | None = None) -> tuple[bytes, dict]:
    """(blob, bit counts) of `encode_float` / `float_code_length`. `on_device`: split with torch ops
    where t lives (default: unless t is on a CPU, where numpy is faster); both give the same blob."""
    t = as_float_tensor(x, dtype)
    fmt = float_format(t.dtype)
    shape = tuple(t.shape)
    n = t.numel()
    raw_head = _header(fmt, _RAW, shape)
    raw_len = len(MAGIC) + 4 + len(raw_head) + n * fmt.bits // 8  # built only if it is sent
    codes: list[PlaneCode] = []
    best, info = None, {"mode": "raw", "payload_bits": n * fmt.bits, "side_bits": 0}
    if n:
        parts = [_header(fmt, _PLANES, shape)]
        for name, width, p_dev in sub_planes(t, fmt, on_device):
            if isinstance(p_dev, np.ndarray):  # torch's uint8 bincount is ~3x numpy's (no int64 copy)
                p_host, counts = p_dev, torch.bincount(torch.from_numpy(p_dev), minlength=256).numpy()
            else:  # the histogram is taken on the device: 256 counts and the plane come back
                counts = torch.bincount(p_dev, minlength=256).cpu().numpy()
                p_host = p_dev.cpu().numpy()
            blob, code = code_plane(p_host, counts, name, width)
            parts.append(blob)
            codes.append(code)
        planes_blob = _seal(b"".join(parts))
        if len(planes_blob) < raw_len:
            best = planes_blob
            info = {"mode": "planes", "payload_bits": sum(c.payload_bits for c in codes),
                    "side_bits": sum(c.side_bits for c in codes)}
    if best is None:
        best = _seal(raw_head + raw_bytes(t, fmt))
    total = 8 * len(best)
    info.update(dtype=fmt.name, n=n, bits=total, header_bits=total - info["payload_bits"] - info["side_bits"],
                raw_bits=n * fmt.bits, planes=[vars(c) for c in codes],
                entropy=sum(c.entropy * c.n for c in codes) / n if codes else math.nan,
                cross_entropy=sum((c.width if c.coder == "raw" else c.entropy) * c.n for c in codes) / n
                if codes else math.nan)
    return best, info


def encode_float(x: Any, dtype: Any = None) -> bytes:
    """Lossless blob of a bf16 / fp16 / fp32 tensor (numpy or torch, any device; see module doc).

    `dtype` ("bf16", "fp16", "fp32") casts x first (round to nearest even); without it x must already
    be in one of those formats. The blob holds the dtype and the shape.
    """
    return encode_blob(x, dtype)[0]


def float_code_length(x: Any, dtype: Any = None) -> dict:
    """Exact bits of `encode_float(x, dtype)`: payload, side, header (they sum to 8 * len(blob)).

    Keys: dtype, n, mode ("planes" or "raw": what was sent), bits, payload_bits, side_bits,
    header_bits, raw_bits (n times the format's width), bits_per_entry,
    payload_/side_/header_bits_per_entry, entropy (the order-0 entropies of the coded planes and
    sub-planes, weighted by their entries: bits per entry of x), cross_entropy (the same with raw
    planes charged their width: the limit of what was sent), planes (per plane or sub-plane, also
    when the raw fallback won: plane, width, coder "raw"/"ans"/"constant", payload_bits, side_bits,
    header_bits, entropy, n). Empty x: the per-entry values are NaN.
    """
    _, info = encode_blob(x, dtype)
    n = info["n"]
    for k in ("bits", "payload_bits", "side_bits", "header_bits"):
        name = "bits_per_entry" if k == "bits" else f"{k}_per_entry"
        info[name] = info[k] / n if n else math.nan
    return info


def decode_float(blob: bytes, device: Any = None) -> torch.Tensor:
    """Inverse of `encode_float`: the tensor, bit for bit, in its dtype and shape (on `device`).

    A truncated, corrupted or foreign blob raises ValueError (the crc32 covers everything after it).
    """
    blob = bytes(blob)
    if len(blob) < 8 or blob[:4] != MAGIC:
        raise ValueError("decode_float: not a float codec blob (bad magic or shorter than 8 bytes)")
    (crc,) = struct.unpack_from("<I", blob, 4)
    data = blob[8:]
    if zlib.crc32(data) != crc:
        raise corrupt("crc32 mismatch")
    if len(data) < 3:
        raise corrupt("header")
    code, mode, ndim = data[0], data[1], data[2]
    if code not in BY_CODE or mode not in (_RAW, _PLANES):
        raise corrupt(f"dtype code {code}, mode {mode}")
    fmt = BY_CODE[code]
    off = 3
    shape = []
    for _ in range(ndim):
        d, off = _read_leb128(data, off)
        shape.append(d)
    n = math.prod(shape)
    if mode == _RAW:
        nbytes = fmt.bits // 8
        if len(data) - off != n * nbytes:
            raise corrupt(f"{len(data) - off} raw bytes for {n} entries")
        a = np.frombuffer(data, dtype=f"<i{nbytes}", offset=off, count=n).astype(
            np.int16 if nbytes == 2 else np.int32)
        return torch.from_numpy(a).view(fmt.torch_dtype).reshape(shape).to(device)
    exponent, off = decode_plane(data, off, n, fmt.plane_width(0))
    zero = exponent == 0
    n_zero = int(np.count_nonzero(zero))
    planes = [exponent]
    for i in range(1, len(fmt.planes)):
        nonzero_part, off = decode_plane(data, off, n - n_zero, fmt.plane_width(i))
        zero_part, off = decode_plane(data, off, n_zero, fmt.plane_width(i))
        planes.append(merge_sub_planes(zero, nonzero_part, zero_part))
    if off != len(data):
        raise corrupt(f"{len(data) - off} trailing bytes")
    return join_planes(planes, fmt, shape, device)
