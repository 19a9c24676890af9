"""Lossless coding of raw bf16 / fp16 / fp32 tensors: exponent and mantissa planes, ANS per plane.

The split of the GPU float codecs (DietGPU's float codec; ZipNN, Hershcovitch et al. 2024): the
exponent of a gradient is highly skewed (a few octaves hold almost every entry) while the low
mantissa bits are close to uniform, so each float is cut into bit planes of at most 8 bits (IEEE
754 fields; the sign travels with the top mantissa bits, which leaves the exponent a plane of its
own) and every plane is sent raw, as a constant, or coded with ANS (Duda 2009; `constriction`'s
`Categorical` model and `AnsCoder`) under its own order-0 histogram, whichever is smallest (the
exact sizes are compared):

    bf16: exponent[14:7] (8 bits)  sign_mantissa[15, 6:0] (8)
    fp16: exponent[14:10] (5)      sign_mantissa_hi[15, 9:8] (3)  mantissa_lo[7:0] (8)
    fp32: exponent[30:23] (8)      sign_mantissa_hi[31, 22:16] (8) mantissa_mid[15:8] (8) mantissa_lo[7:0] (8)

The exponent plane goes first; every other plane is sent as two planes, its entries with a nonzero
exponent and those with exponent 0 (zeros and subnormals): the decoder already has the exponents,
so the split is free, and the zeros of a zero-heavy layer no longer spread their mass over the
mantissa histogram (order-0 entropy given one bit that the decoder knows).

Every bit pattern round-trips (NaN payloads, -0.0, subnormals, Inf): the planes are the bits.
The blob is never larger than the raw bytes plus the raw header: the plane coding is kept only when
its whole blob is smaller than the raw one.

Blob (little endian): magic "GFC1", crc32 of everything after it, dtype code, mode (0 raw, 1 planes),
ndim, the dims as LEB128 varints; raw mode: the raw bytes. Planes mode, per (sub-)plane: a mode
byte (0 raw, 1 ans, 2 constant); constant: the value (1 byte); raw: ceil(n w / 8) bytes of packed
w-bit values (MSB first); ans: lo, hi (1 byte each), the counts of lo .. hi-1 as
Elias-gamma(count + 1) (Elias 1975; the count of hi is n minus their sum) padded to a byte, a u32
word count per chunk of `CHUNK` entries, then the chunks' 32-bit ANS words.

Bits (`float_code_length`): `payload` = raw plane bytes and ANS words, `side` = the histograms
(lo, hi, counts, a constant plane's value), `header` = the rest (magic, crc, dtype, shape, plane
modes, chunk word counts); payload + side + header = 8 * len(blob) exactly.

On CUDA the plane split, the zero-exponent split and the histograms run on the device (torch bit
ops on the int16 / int32 view); only the uint8 planes and 256 counts per plane go to the host,
where `constriction` codes them. Decoding assembles the planes on `device`.
"""

from __future__ import annotations

import math
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from coders.entropy import pack_bits
from coders.models import elias_gamma_bits
from coders.wire import BF16_BITS, FLOAT16_BITS, FLOAT32_BITS

CHUNK = 1 << 20
"""Entries per ANS stream: memory stays bounded for huge tensors (4 bytes of header per chunk)."""
MAGIC = b"GFC1"
CODER_NAME = "planes-ans"
ZSTD_CHUNK_BYTES = 4 << 20
"""zstd frames of 4 MiB, the framing of `coders.entropy.zstd_raw_bits` (same bytes -> same bits)."""
ENTROPY_MARGIN_BITS = 128
"""Slack of the skip rule of `_code_plane`. Under any model q, ANS needs at least sum -log2 q(x_i)
>= (order-0 entropy) bits per coded symbol, less its 64-bit state, except that constriction's coder
starts in state 0 and stays there while the table's first symbol is encoded, so a trailing run of
it is free. A plane whose entropy without that run, plus side bits, exceeds raw + this margin
cannot beat raw, so the coder is skipped: the choice stays the exact smaller size."""

_RAW, _PLANES = 0, 1
_PLANE_RAW, _PLANE_ANS, _PLANE_CONST = 0, 1, 2


@dataclass(frozen=True)
class FloatFormat:
    """One IEEE 754 format: torch dtype, integer view, width, code in the blob, and its planes.

    A plane is a name and the bit fields it gathers, (lowest bit, width) from its most to its least
    significant bits; the planes partition the format's bits.
    """

    name: str
    torch_dtype: torch.dtype
    int_dtype: torch.dtype
    bits: int
    planes: tuple[tuple[str, tuple[tuple[int, int], ...]], ...]
    code: int

    def plane_width(self, i: int) -> int:
        return sum(w for _, w in self.planes[i][1])


FORMATS: dict[str, FloatFormat] = {
    "bf16": FloatFormat("bf16", torch.bfloat16, torch.int16, BF16_BITS,
                        (("exponent", ((7, 8),)), ("sign_mantissa", ((15, 1), (0, 7)))), 1),
    "fp16": FloatFormat("fp16", torch.float16, torch.int16, FLOAT16_BITS,
                        (("exponent", ((10, 5),)), ("sign_mantissa_hi", ((15, 1), (8, 2))),
                         ("mantissa_lo", ((0, 8),))), 2),
    "fp32": FloatFormat("fp32", torch.float32, torch.int32, FLOAT32_BITS,
                        (("exponent", ((23, 8),)), ("sign_mantissa_hi", ((31, 1), (16, 7))),
                         ("mantissa_mid", ((8, 8),)), ("mantissa_lo", ((0, 8),))), 3),
}
_ALIASES = {"bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16", "half": "fp16",
            "fp32": "fp32", "float32": "fp32", "float": "fp32"}
_BY_TORCH = {f.torch_dtype: f for f in FORMATS.values()}
_BY_CODE = {f.code: f for f in FORMATS.values()}
RAW_MODEL_NAMES = {"bf16": "raw-bf16", "fp16": "raw-fp16", "fp32": "raw-float32"}
"""Model names of the rows; fp32 is `raw-float32` like the zstd rows of `bits_per_entry`."""


def float_format(dtype: Any) -> FloatFormat:
    """The `FloatFormat` of a name ("bf16", "fp16", "fp32" and aliases) or a torch / numpy dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype in _BY_TORCH:
            return _BY_TORCH[dtype]
    elif isinstance(dtype, str) and dtype.lower() in _ALIASES:
        return FORMATS[_ALIASES[dtype.lower()]]
    else:
        try:
            nd = np.dtype(dtype)
        except TypeError:
            nd = None
        if nd == np.float16:
            return FORMATS["fp16"]
        if nd == np.float32:
            return FORMATS["fp32"]
    raise ValueError(f"float codec: unsupported dtype {dtype!r}; use one of bf16, fp16, fp32 "
                     "(torch.bfloat16, torch.float16, torch.float32, numpy float16 / float32)")


def as_float_tensor(x: Any, dtype: Any = None) -> torch.Tensor:
    """x as a contiguous torch tensor of a supported format (same device; numpy without a copy).

    With `dtype`, x is cast to it (round to nearest even); without, x must already be bf16 / fp16 /
    fp32 (a float64 array needs `dtype`: the codec never rounds silently).
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        a = np.asarray(x)
        if dtype is None:
            float_format(a.dtype)  # raises for float64, ints, ...
        t = torch.from_numpy(np.ascontiguousarray(a))
    if dtype is not None:
        fmt = float_format(dtype)
        if t.is_complex():
            raise ValueError(f"float codec: cannot cast complex {t.dtype} to {fmt.name}")
        t = t.to(fmt.torch_dtype)
    else:
        float_format(t.dtype)
    return t.contiguous()


# ----------------------------------------------------------------------------------------------
# planes


def _device_planes(t: torch.Tensor, fmt: FloatFormat) -> list[torch.Tensor]:
    """The uint8 planes of t, computed where t lives (torch bit ops on the int16 / int32 view).

    Arithmetic shifts of the signed view are masked to each field's width, so sign extension never
    leaks into a plane.
    """
    bits = t.reshape(-1).view(fmt.int_dtype)
    planes = []
    for _, fields in fmt.planes:
        shift = sum(w for _, w in fields)
        p = None
        for lo, w in fields:
            shift -= w
            f = torch.bitwise_and(torch.bitwise_right_shift(bits, lo), (1 << w) - 1)
            f = torch.bitwise_left_shift(f, shift) if shift else f
            p = f if p is None else torch.bitwise_or(p, f)
        planes.append(p.to(torch.uint8))
    return planes


def split_planes(x: Any, dtype: Any = None) -> dict[str, np.ndarray]:
    """The planes of x (see the module doc) as host uint8 arrays, by name, in the format's order."""
    t = as_float_tensor(x, dtype)
    fmt = float_format(t.dtype)
    return {name: p.cpu().numpy() for (name, _), p in zip(fmt.planes, _device_planes(t, fmt), strict=True)}


def join_planes(planes: Sequence[np.ndarray], fmt: FloatFormat, shape: Sequence[int],
                device: Any = None) -> torch.Tensor:
    """Inverse of `split_planes`: the tensor of `fmt` and `shape`, assembled on `device`."""
    if device is None:
        # on the host with numpy, on the unsigned view: no widening, no sign fix-up; a device
        # (also "cpu") takes the torch path, which runs where the result is wanted
        ut = np.uint16 if fmt.bits == 16 else np.uint32
        out = np.zeros(math.prod(shape), dtype=ut)
        for (_, fields), p in zip(fmt.planes, planes, strict=True):
            v = np.asarray(p).astype(ut)
            shift = sum(w for _, w in fields)
            for lo, w in fields:
                shift -= w
                f = (v >> ut(shift)) & ut((1 << w) - 1) if shift else v & ut((1 << w) - 1)
                out |= f << ut(lo)
        signed = out.view(np.int16 if fmt.bits == 16 else np.int32)
        return torch.from_numpy(signed).view(fmt.torch_dtype).reshape(tuple(shape))
    acc = torch.zeros(math.prod(shape), dtype=torch.int64, device=device)
    for (_, fields), p in zip(fmt.planes, planes, strict=True):
        v = torch.from_numpy(np.ascontiguousarray(p)).to(device=device, dtype=torch.int64)
        shift = sum(w for _, w in fields)
        for lo, w in fields:
            shift -= w
            acc |= ((v >> shift) & ((1 << w) - 1)) << lo
    half = 1 << (fmt.bits - 1)
    acc = torch.where(acc >= half, acc - 2 * half, acc)  # unsigned bit pattern -> the signed view
    return acc.to(fmt.int_dtype).view(fmt.torch_dtype).reshape(tuple(shape))


def plane_entropy(counts: np.ndarray) -> float:
    """Order-0 (plug-in) entropy in bits per entry of a plane with these value counts."""
    c = counts[counts > 0].astype(np.float64)
    if c.size <= 1:
        return 0.0
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum())


def _pack_plane(p: np.ndarray, width: int) -> bytes:
    """The low `width` bits of each uint8, MSB first, padded to a byte.

    Eight values make exactly `width` bytes: they are joined into the low 8 * width bits of a
    uint64 and its big-endian bytes are kept (vectorized over groups of eight).
    """
    if width == 8:
        return p.tobytes()
    if width == 1:
        return np.packbits(p).tobytes()
    n = p.size
    g = np.zeros(-(-n // 8) * 8, dtype=np.uint64)
    g[:n] = p
    g = g.reshape(-1, 8)
    word = np.zeros(g.shape[0], dtype=np.uint64)
    for j in range(8):  # the 8 slots of a group, not the entries
        word |= g[:, j] << np.uint64(width * (7 - j))
    out = word.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 8 - width :]
    return out.tobytes()[: (n * width + 7) // 8]


def _unpack_plane(data: bytes, width: int, n: int) -> np.ndarray:
    """Inverse of `_pack_plane`: n values of `width` bits."""
    if width == 8:
        return np.frombuffer(data, dtype=np.uint8, count=n).copy()
    if width == 1:
        return np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=n)
    groups = -(-n // 8)
    buf = np.zeros((groups, 8), dtype=np.uint8)
    flat = np.zeros(groups * width, dtype=np.uint8)
    flat[: len(data)] = np.frombuffer(data, dtype=np.uint8)
    buf[:, 8 - width :] = flat.reshape(groups, width)
    word = buf.view(">u8").reshape(groups).astype(np.uint64)
    mask = np.uint64((1 << width) - 1)
    out = np.empty((groups, 8), dtype=np.uint8)
    for j in range(8):
        out[:, j] = (word >> np.uint64(width * (7 - j))) & mask
    return out.reshape(-1)[:n]


# ----------------------------------------------------------------------------------------------
# side information: the histogram


def _gamma_pack(values: np.ndarray) -> bytes:
    """Elias-gamma codes of positive integers (v in 2 floor(log2 v) + 1 bits), MSB first, byte-padded."""
    if values.size == 0:
        return b""
    return pack_bits(values.astype(np.uint64), elias_gamma_bits(values))[0].tobytes()


def _gamma_unpack(data: bytes, offset: int, count: int, max_value: int) -> tuple[np.ndarray, int]:
    """`count` Elias-gamma codes of values <= max_value from data[offset:] -> (values, offset after
    the padded codes); only the bytes those codes can span are read."""
    if count == 0:
        return np.zeros(0, dtype=np.int64), offset
    span = (count * (2 * max_value.bit_length() - 1) + 7) // 8
    bits = np.unpackbits(np.frombuffer(data[offset : offset + span], dtype=np.uint8))
    s = bits.tobytes().translate(bytes.maketrans(b"\x00\x01", b"01"))
    pos, vals = 0, []
    for _ in range(count):  # the alphabet, at most 256 codes, not the entries
        one = s.find(b"1", pos)
        if one < 0:
            raise ValueError("decode_float: blob is truncated or corrupt (histogram codes)")
        k = one - pos
        end = one + k + 1
        if end > len(s):
            raise ValueError("decode_float: blob is truncated or corrupt (histogram codes)")
        vals.append(int(s[one:end], 2))
        pos = end
    return np.array(vals, dtype=np.int64), offset + (pos + 7) // 8


def _categorical(counts: np.ndarray) -> Any:
    import constriction

    return constriction.stream.model.Categorical(counts.astype(np.float64) / float(counts.sum()),
                                                 perfect=False)


# ----------------------------------------------------------------------------------------------
# encode


@dataclass
class PlaneCode:
    """How one plane was sent and what it cost (bits)."""

    plane: str
    width: int
    coder: str
    payload_bits: int
    side_bits: int
    header_bits: int
    entropy: float
    n: int


def _leb128(v: int) -> bytes:
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
            raise ValueError("decode_float: blob is truncated or corrupt (shape)")
        b = data[off]
        off += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, off


def _code_plane(p: np.ndarray, counts: np.ndarray, name: str, width: int) -> tuple[bytes, PlaneCode]:
    """The smallest of: constant, raw, ANS under the plane's histogram; with its bit counts."""
    n = p.size
    present = np.flatnonzero(counts)
    if present.size == 0:
        return bytes([_PLANE_RAW]), PlaneCode(name, width, "raw", 0, 0, 8, 0.0, 0)
    if present.size == 1:
        return (bytes([_PLANE_CONST, int(present[0])]),
                PlaneCode(name, width, "constant", 0, 8, 8, 0.0, n))
    h = plane_entropy(counts)
    raw_len = (n * width + 7) // 8

    def raw() -> tuple[bytes, PlaneCode]:
        return (bytes([_PLANE_RAW]) + _pack_plane(p, width),
                PlaneCode(name, width, "raw", 8 * raw_len, 0, 8, h, n))

    lo, hi = int(present[0]), int(present[-1])
    side = bytes([lo, hi]) + _gamma_pack(counts[lo:hi] + 1)
    # the trailing run of the table's first symbol costs nothing (one pass only when there is one)
    run = int(np.argmax(p[::-1] != lo)) if p[-1] == lo else 0
    rest = counts.copy()
    rest[lo] -= run
    if (n - run) * plane_entropy(rest) + 8 * len(side) > 8 * raw_len + ENTROPY_MARGIN_BITS:
        return raw()  # cannot beat raw: skip the coder
    import constriction

    model = _categorical(counts[lo : hi + 1])
    idx = np.empty(n, dtype=np.int32)
    np.subtract(p, np.int32(lo), out=idx, casting="unsafe")
    streams = []
    for a in range(0, n, CHUNK):
        enc = constriction.stream.stack.AnsCoder()
        enc.encode_reverse(idx[a : a + CHUNK], model)
        streams.append(enc.get_compressed().astype("<u4"))
    table = np.array([s.size for s in streams], dtype="<u4").tobytes()
    body = b"".join(s.tobytes() for s in streams)
    if len(side) + len(table) + len(body) < raw_len:
        return (bytes([_PLANE_ANS]) + side + table + body,
                PlaneCode(name, width, "ans", 8 * len(body), 8 * len(side), 8 + 8 * len(table), h, n))
    return raw()


def _sub_planes(t: torch.Tensor, fmt: FloatFormat, on_device: bool | None = None
                ) -> list[tuple[str, int, Any]]:
    """(name, width, values) of what is coded: the exponent plane, then every other plane split
    into its entries with a nonzero exponent and those with exponent 0 (zeros and subnormals).

    The decoder has the exponents first, so the split costs nothing to send; it keeps the zeros of
    a zero-heavy layer from spreading their mass over the mantissa planes. Values are numpy arrays
    for a CPU tensor and tensors on t's device otherwise (the split runs there); `on_device=True`
    keeps the torch path on a CPU too.
    """
    planes: list[Any] = _device_planes(t, fmt)
    on_host = planes[0].device.type == "cpu" if on_device is None else not on_device
    if on_host:  # numpy's compress is several times faster than torch's boolean index on a CPU
        planes = [p.numpy() for p in planes]
    zero = planes[0] == 0
    n_zero = int(zero.sum())
    out = [(fmt.planes[0][0], fmt.plane_width(0), planes[0])]
    for i in range(1, len(planes)):
        name, width, p = fmt.planes[i][0], fmt.plane_width(i), planes[i]
        if n_zero == 0:
            nonzero_part, zero_part = p, p[:0]
        elif on_host:
            nonzero_part, zero_part = np.compress(~zero, p), np.compress(zero, p)
        else:
            nonzero_part, zero_part = p[~zero], p[zero]
        out.append((name, width, nonzero_part))
        out.append((f"{name}@exponent0", width, zero_part))
    return out


def _raw_bytes(t: torch.Tensor, fmt: FloatFormat) -> bytes:
    """The format's little-endian bytes of t (what a raw all-reduce sends)."""
    return t.reshape(-1).view(fmt.int_dtype).cpu().numpy().astype(f"<i{fmt.bits // 8}").tobytes()


def _header(fmt: FloatFormat, mode: int, shape: Sequence[int]) -> bytes:
    if len(shape) > 255:
        raise ValueError(f"float codec: at most 255 dims, got {len(shape)}")
    return bytes([fmt.code, mode, len(shape)]) + b"".join(_leb128(int(d)) for d in shape)


def _seal(body: bytes) -> bytes:
    return MAGIC + struct.pack("<I", zlib.crc32(body)) + body


def _encode(x: Any, dtype: Any = None, on_device: bool | None = None) -> tuple[bytes, dict]:
    """(blob, bit counts). `on_device`: split with torch ops where t lives (default: unless t is on
    a CPU, where numpy is faster); both give the same blob."""
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
        for name, width, p_dev in _sub_planes(t, fmt, on_device):
            if isinstance(p_dev, np.ndarray):  # torch's uint8 bincount is ~3x numpy's (no int64 copy)
                p_host, counts = p_dev, torch.bincount(torch.from_numpy(p_dev), minlength=256).numpy()
            else:  # the histogram is taken on the device: 256 counts and the plane come back
                counts = torch.bincount(p_dev, minlength=256).cpu().numpy()
                p_host = p_dev.cpu().numpy()
            blob, code = _code_plane(p_host, counts, name, width)
            parts.append(blob)
            codes.append(code)
        planes_blob = _seal(b"".join(parts))
        if len(planes_blob) < raw_len:
            best = planes_blob
            info = {"mode": "planes", "payload_bits": sum(c.payload_bits for c in codes),
                    "side_bits": sum(c.side_bits for c in codes)}
    if best is None:
        best = _seal(raw_head + _raw_bytes(t, fmt))
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
    return _encode(x, dtype)[0]


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
    _, info = _encode(x, dtype)
    n = info["n"]
    for k in ("bits", "payload_bits", "side_bits", "header_bits"):
        name = "bits_per_entry" if k == "bits" else f"{k}_per_entry"
        info[name] = info[k] / n if n else math.nan
    return info


# ----------------------------------------------------------------------------------------------
# decode


def _corrupt(what: str) -> ValueError:
    return ValueError(f"decode_float: blob is truncated or corrupt ({what})")


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
        raise _corrupt("crc32 mismatch")
    if len(data) < 3:
        raise _corrupt("header")
    code, mode, ndim = data[0], data[1], data[2]
    if code not in _BY_CODE or mode not in (_RAW, _PLANES):
        raise _corrupt(f"dtype code {code}, mode {mode}")
    fmt = _BY_CODE[code]
    off = 3
    shape = []
    for _ in range(ndim):
        d, off = _read_leb128(data, off)
        shape.append(d)
    n = math.prod(shape)
    if mode == _RAW:
        nbytes = fmt.bits // 8
        if len(data) - off != n * nbytes:
            raise _corrupt(f"{len(data) - off} raw bytes for {n} entries")
        a = np.frombuffer(data, dtype=f"<i{nbytes}", offset=off, count=n).astype(
            np.int16 if nbytes == 2 else np.int32)
        return torch.from_numpy(a).view(fmt.torch_dtype).reshape(shape).to(device)
    exponent, off = _decode_plane(data, off, n, fmt.plane_width(0))
    zero = exponent == 0
    n_zero = int(np.count_nonzero(zero))
    planes = [exponent]
    for i in range(1, len(fmt.planes)):
        nonzero_part, off = _decode_plane(data, off, n - n_zero, fmt.plane_width(i))
        zero_part, off = _decode_plane(data, off, n_zero, fmt.plane_width(i))
        if n_zero:
            p = np.empty(n, dtype=np.uint8)
            p[~zero], p[zero] = nonzero_part, zero_part
        else:
            p = nonzero_part
        planes.append(p)
    if off != len(data):
        raise _corrupt(f"{len(data) - off} trailing bytes")
    return join_planes(planes, fmt, shape, device)


def _decode_plane(data: bytes, off: int, n: int, width: int) -> tuple[np.ndarray, int]:
    if off >= len(data):
        raise _corrupt("plane mode")
    mode = data[off]
    off += 1
    if mode == _PLANE_CONST:
        if off >= len(data):
            raise _corrupt("constant plane")
        return np.full(n, data[off], dtype=np.uint8), off + 1
    if mode == _PLANE_RAW:
        nbytes = (n * width + 7) // 8
        if off + nbytes > len(data):
            raise _corrupt("raw plane")
        return _unpack_plane(data[off : off + nbytes], width, n), off + nbytes
    if mode != _PLANE_ANS or off + 2 > len(data):
        raise _corrupt(f"plane mode {mode}")
    import constriction

    lo, hi = data[off], data[off + 1]
    if hi <= lo:
        raise _corrupt("histogram range")
    counts, off = _gamma_unpack(data, off + 2, hi - lo, n + 1)
    counts = np.append(counts - 1, n - int((counts - 1).sum()))
    if counts[-1] < 1:
        raise _corrupt("histogram counts")
    model = _categorical(counts)
    k = -(-n // CHUNK)
    if off + 4 * k > len(data):
        raise _corrupt("chunk table")
    sizes = np.frombuffer(data, dtype="<u4", count=k, offset=off).astype(np.int64)
    off += 4 * k
    if off + 4 * int(sizes.sum()) > len(data):
        raise _corrupt("ANS words")
    out = np.empty(n, dtype=np.uint8)
    for c in range(k):
        words = np.frombuffer(data, dtype="<u4", count=int(sizes[c]), offset=off).astype(np.uint32)
        off += 4 * int(sizes[c])
        count = min(CHUNK, n - c * CHUNK)
        try:
            idx = np.asarray(constriction.stream.stack.AnsCoder(words).decode(model, count))
        except Exception as err:  # constriction raises its own error types on bad streams
            raise _corrupt(f"ANS chunk {c}: {err}") from err
        out[c * CHUNK : c * CHUNK + count] = idx + lo
    return out, off


# ----------------------------------------------------------------------------------------------
# rows for coders.report.bits_per_entry


def _zstd_bits(raw: bytes, level: int) -> tuple[int, float, float]:
    """zstd(level) bits of raw in 4 MiB frames, encode and decode seconds (decode checked)."""
    import zstandard

    cctx, dctx = zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor()
    t0 = time.perf_counter()
    frames = [cctx.compress(raw[i : i + ZSTD_CHUNK_BYTES]) for i in range(0, len(raw), ZSTD_CHUNK_BYTES)]
    t1 = time.perf_counter()
    back = b"".join(dctx.decompress(f) for f in frames)
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
    (the limit of any plane-wise order-0 code), `cross_entropy` = the same with raw planes at their
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
        blob, info = _encode(t)
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
        raw = _raw_bytes(t, fmt)
        for level in zstd_levels:
            bits, enc_s, dec_s = _zstd_bits(raw, level)
            zrow = dict(common, coder=f"zstd-{level}", entropy=math.nan, cross_entropy=math.nan)
            rows.append(_finish(zrow, n, bits, 0, enc_s, dec_s))
    return rows


__all__ = [
    "CHUNK", "CODER_NAME", "FORMATS", "FloatFormat", "PlaneCode", "RAW_MODEL_NAMES", "as_float_tensor",
    "decode_float", "encode_float", "float_code_length", "float_format", "join_planes", "plane_entropy",
    "raw_float_rows", "split_planes",
]
