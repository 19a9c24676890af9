"""Quantized gradients as entropy-coded bytes: quantizer -> fitted model -> coder -> one message.

The GenNorm coding scheme as an operator on one flat tensor (the coded-SGD method and its DDP
hook both use it): the sender quantizes x (`UniformQuantizer` at c x RMS, optionally with
stochastic rounding and per-block bf16 scales, or QSGD's levels, `QSGDLevels`), fits its
probability model to the model-domain values (`coders.models.build_model`: "gennorm",
"zi-gennorm", "laplace", "histogram"), codes the symbols (`coders.entropy.encode`, "ans" or
"huffman") and sends ONE variable-length uint8 message; the receiver rebuilds the model from
what the message carries (or from the model it kept, see `refresh`), decodes the symbols and
reconstructs exactly the sender's quantized values.

Message (little-endian; its bytes are all that travels, so bits = 8 x len):
    uint8    flags                       bit 0: a model follows
    quantizer data
      uniform:  float32 step, then one bf16 scale per block (when block_size is set)
      qsgd:     one float32 norm per bucket
    model (when flagged)
      int32 lo, uint32 size              table over symbols lo .. lo + size - 1 (+ the escape entry)
      family:   its parameters, bf16 each, in the family's order (the table is computed from
                the bf16 values on both ends: `coders.models.family_model`)
      histogram: size + 1 counts (escape last), each as the Elias-gamma code of count + 1,
                packed MSB first and padded to a whole byte (the side bits `histogram_model` states)
    the `coders.entropy.encode` blob     (self-delimiting: its own header, chunk table, escapes)

Model refresh (`refresh`): "step" refits and sends the model every call; an integer k refits
every k calls and reuses the last model in between (the receiver keeps it; symbols outside its
table are escaped, so coding stays lossless); "once" fits on the first call and reuses it
forever, so the model's side information is paid once.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from coders.compressors.qsgd import QSGDLevels
from coders.entropy import decode, encode
from coders.models import (
    ProbabilityModel,
    build_model,
    elias_gamma_pack,
    elias_gamma_unpack,
    family_model,
)
from coders.quantizers import Quantized, UniformCells, UniformQuantizer

__all__ = ["EntropyCodec", "SenderState", "ReceiverState", "QUANTIZERS", "MODELS", "CODERS", "parse_refresh",
           "elias_gamma_pack", "elias_gamma_unpack"]

QUANTIZERS = ("uniform", "stochastic", "qsgd")
MODELS = ("gennorm", "zi-gennorm", "laplace", "histogram")
CODERS = ("ans", "huffman")

_FLAG_MODEL = 1
_RANGE = struct.Struct("<iI")


def parse_refresh(refresh: str | int) -> int | None:
    """Refit period in calls: "step" -> 1, k -> k, "once" -> None (never again)."""
    if refresh == "step":
        return 1
    if refresh == "once":
        return None
    if isinstance(refresh, str) and refresh.isdigit():
        refresh = int(refresh)
    if isinstance(refresh, bool) or not isinstance(refresh, int) or refresh < 1:
        raise ValueError(f"refresh must be 'step', 'once' or a positive integer k, got {refresh!r}")
    return int(refresh)


def _family(name: str) -> tuple[list[str], Any]:
    """(parameter names in message order, builder params -> distribution) of a family model."""
    from gradstats.families import FAMILIES, ZeroInflated

    base = name.removeprefix("zi-")
    names = list(FAMILIES[base]().params)
    if name.startswith("zi-"):
        return ["pi", *names], lambda p: ZeroInflated(FAMILIES[base](**{k: p[k] for k in names}), p["pi"])
    return names, lambda p: FAMILIES[base](**p)


def _bf16_bytes(values: np.ndarray) -> bytes:
    """float32 values that are bf16-exact, as 2 bytes each."""
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(torch.bfloat16).view(
        torch.int16).numpy().astype("<i2").tobytes()


def _from_bf16(buf: bytes, count: int, offset: int) -> np.ndarray:
    raw = np.frombuffer(buf, dtype="<i2", count=count, offset=offset).copy()
    return torch.from_numpy(raw).view(torch.bfloat16).float().numpy()


@dataclass
class SenderState:
    """What one sender keeps between calls: its quantizer (rounding-noise counter), model, call count."""

    quantizer: Any
    model: ProbabilityModel | None = None
    calls: int = 0


@dataclass
class ReceiverState:
    """What a receiver keeps per sender: the last model that sender sent."""

    model: ProbabilityModel | None = None


class EntropyCodec:
    """Quantize -> model -> entropy-code one flat tensor into a uint8 message, and back (module doc).

    Options: `quantizer` ("uniform", "stochastic", "qsgd"), `scale_mult` (c: step = c x RMS,
    uniform / stochastic), `block_size` (None: one RMS for the tensor; B: per-block bf16 RMS
    scales), `levels` and `bucket_size` (qsgd), `model` (MODELS), `coder` (CODERS), `refresh`
    ("step", k, "once"), `fit_sample` (fit on a seeded subsample of that many values; None: all).
    """

    def __init__(self, quantizer: str = "uniform", *, scale_mult: float = 0.5, block_size: int | None = None,
                 levels: int = 16, bucket_size: int = 512, model: str = "zi-gennorm", coder: str = "ans",
                 refresh: str | int = "step", fit_sample: int | None = 1 << 17):
        if quantizer not in QUANTIZERS:
            raise ValueError(f"quantizer must be one of {QUANTIZERS}, got {quantizer!r}")
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        if coder not in CODERS:
            raise ValueError(f"coder must be one of {CODERS}, got {coder!r}")
        if not (scale_mult > 0 and math.isfinite(scale_mult)):
            raise ValueError(f"scale_mult must be positive and finite, got {scale_mult}")
        if block_size is not None and block_size < 1:
            raise ValueError(f"block_size must be >= 1 or None, got {block_size}")
        if levels < 1 or bucket_size < 1:
            raise ValueError(f"levels and bucket_size must be >= 1, got {levels}, {bucket_size}")
        self.quantizer_kind, self.scale_mult, self.block_size = quantizer, float(scale_mult), block_size
        self.levels, self.bucket_size = int(levels), int(bucket_size)
        self.model_kind, self.coder = model, coder
        self.period = parse_refresh(refresh)
        self.fit_sample = fit_sample
        if model != "histogram":
            self.param_names, self.make_dist = _family(model)

    # --- the two ends ------------------------------------------------------------------------
    def sender(self, seed: int) -> SenderState:
        """A sender's state; `seed` drives its rounding noise (give each worker its own)."""
        if self.quantizer_kind == "qsgd":
            q: Any = QSGDLevels(self.levels, self.bucket_size, seed=seed)
        else:
            q = UniformQuantizer(scale_mult=self.scale_mult, block_size=self.block_size,
                                 stochastic=self.quantizer_kind == "stochastic", seed=seed)
        return SenderState(q)

    def receiver(self) -> ReceiverState:
        """A receiver's state for one sender."""
        return ReceiverState()

    def _refit(self, state: SenderState) -> bool:
        if state.model is None:
            return True
        return self.period is not None and state.calls % self.period == 0

    def encode(self, x: Tensor, state: SenderState) -> tuple[Tensor, Tensor, dict]:
        """(message as a uint8 tensor on x's device, the quantized x_hat the receivers rebuild, info).

        info: `n` symbols, `model_sent` (this message carries the model), `side_bytes` (flags,
        quantizer data and model), `coded_bytes` (the coder blob).
        """
        flat = x.detach().reshape(-1)
        q = state.quantizer
        qz = q.quantize(flat)
        refit = self._refit(state)
        if refit:
            values = None if self.model_kind == "histogram" else q.normalize(flat)
            state.model = build_model(self.model_kind, qz, values, fit_sample=self.fit_sample,
                                      seed=state.calls)
        state.calls += 1
        model = state.model
        head = bytes([_FLAG_MODEL if refit else 0]) + self._quantizer_bytes(qz)
        if refit:
            head += self._model_bytes(model, qz.symbols)
        blob = encode(qz.symbols, model, self.coder)
        msg = np.frombuffer(head + blob, dtype=np.uint8)
        x_hat = qz.dequantize()
        info = {"n": qz.n, "model_sent": refit, "side_bytes": len(head), "coded_bytes": len(blob)}
        return torch.from_numpy(msg.copy()).to(x.device), x_hat.reshape(x.shape).to(x.dtype), info

    def decode(self, msg: Tensor, state: ReceiverState, shape: torch.Size | tuple,
               device: torch.device | str | None = None) -> Tensor:
        """The sender's quantized values from its message alone (and the model `state` kept)."""
        buf = msg.detach().cpu().numpy().tobytes()
        n = int(torch.Size(shape).numel())
        flags, off = buf[0], 1
        qz, off = self._read_quantizer(buf, off, n, shape, msg.device if device is None else device)
        if flags & _FLAG_MODEL:
            state.model, off = self._read_model(buf, off, qz)
        if state.model is None:
            raise ValueError("EntropyCodec.decode: no model yet (the first message must carry one)")
        qz.symbols = decode(buf[off:], state.model, n, self.coder)
        out = qz.dequantize()
        return out.reshape(shape)

    # --- message parts ---------------------------------------------------------------------------
    def _quantizer_bytes(self, qz: Quantized) -> bytes:
        if self.quantizer_kind == "qsgd":
            return np.ascontiguousarray(qz.cells.scales, dtype="<f4").tobytes()
        out = struct.pack("<f", qz.step)
        if qz.cells.scales is not None:
            out += _bf16_bytes(qz.cells.scales)
        return out

    def _read_quantizer(self, buf: bytes, off: int, n: int, shape: Any,
                        device: Any) -> tuple[Quantized, int]:
        dev = str(device)
        if self.quantizer_kind == "qsgd":
            nb = -(-n // self.bucket_size)
            scales = np.frombuffer(buf, dtype="<f4", count=nb, offset=off).astype(np.float32)
            q = QSGDLevels(self.levels, self.bucket_size)
            return q.quantized(np.zeros(0, dtype=np.int64), scales, (n,), dev), off + 4 * nb
        (step,) = struct.unpack_from("<f", buf, off)
        off += 4
        scales = None
        if self.block_size is not None:
            nb = -(-n // self.block_size)
            scales = _from_bf16(buf, nb, off)
            off += 2 * nb
        cells = UniformCells(step=float(step), scales=scales, block_size=self.block_size,
                             stochastic=self.quantizer_kind == "stochastic")
        qz = Quantized(symbols=np.zeros(0, dtype=np.int64), shape=(n,), method="uniform", cells=cells,
                       torch_device=dev)
        return qz, off

    def _model_bytes(self, model: ProbabilityModel, symbols: np.ndarray) -> bytes:
        size = model.table_size - 1
        out = _RANGE.pack(model.lo, size)
        if self.model_kind == "histogram":
            # the counts histogram_model normalized: symbols outside [lo, hi] count as the escape entry
            counts = np.bincount(model.indices(symbols), minlength=model.table_size)
            return out + elias_gamma_pack(counts + 1)
        return out + _bf16_bytes(np.array([model.params[k] for k in self.param_names], dtype=np.float32))

    def _read_model(self, buf: bytes, off: int, qz: Quantized) -> tuple[ProbabilityModel, int]:
        lo, size = _RANGE.unpack_from(buf, off)
        off += _RANGE.size
        if self.model_kind == "histogram":
            counts, nbytes = elias_gamma_unpack(buf, size + 1, off)
            counts -= 1
            model = ProbabilityModel("histogram", lo, counts.astype(np.float64), 8 * (_RANGE.size + nbytes),
                                     params={"n": int(counts.sum())})
            return model, off + nbytes
        k = len(self.param_names)
        values = _from_bf16(buf, k, off)
        dist = self.make_dist({name: float(v) for name, v in zip(self.param_names, values, strict=True)})
        ends = np.array([lo, lo + size - 1], dtype=np.int64)
        return family_model(dist, qz, ends, name=self.model_kind), off + 2 * k
