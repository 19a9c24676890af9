"""QSGD: stochastic s-level quantization with one norm per bucket.

Alistarh et al., "QSGD: Communication-Efficient SGD via Gradient Quantization and Encoding",
NeurIPS 2017. Per bucket b of n entries:
    Q(x_i) = ||x_b||_2 * sign(x_i) * l_i / s,   l_i = floor(s |x_i| / ||x_b||_2 + U_i),  U_i ~ U[0, 1)
Unbiased, with E||Q(x) - x||^2 <= min(n / s^2, sqrt(n) / s) ||x||^2 (Lemma 3.1).
Wire: one fp32 norm per bucket + each signed level in ceil(log2(2s + 1)) packed bits.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from coders.compressors.payload import Compressor, Payload, pack_bits, tensor_bits, unpack_bits, unpack_rows
from coders.quantizers import Quantized, UniformCells

__all__ = ["QSGD", "QSGDLevels", "qsgd_omega"]


def qsgd_omega(n: int, levels: int) -> float:
    """Variance factor omega = min(n / s^2, sqrt(n) / s) of s-level QSGD on n entries."""
    if levels < 1 or n < 0:
        raise ValueError(f"qsgd_omega: need levels >= 1 and n >= 0, got {levels}, {n}")
    return min(n / levels**2, math.sqrt(n) / levels)


class QSGD(Compressor):
    """s-level stochastic quantization, bucketed norms (bucket_size=None: one norm per tensor).

    Randomness comes from a per-worker generator kept in `state["generator"]`, seeded with
    `seed` on first use (give each worker its own seed). `contractive=True` decodes
    Q(x) / (1 + omega), a contractive operator (E||C(x) - x||^2 <= omega/(1+omega) ||x||^2), which
    error feedback needs (Stich & Karimireddy 2020); the wire is unchanged.
    """

    name = "qsgd"
    linear = False
    unbiased = True

    def __init__(self, levels: int = 16, bucket_size: int | None = 512, seed: int = 0,
                 contractive: bool = False):
        if levels < 1:
            raise ValueError(f"QSGD: levels must be >= 1, got {levels}")
        if bucket_size is not None and bucket_size < 1:
            raise ValueError(f"QSGD: bucket_size must be >= 1 or None, got {bucket_size}")
        self.levels, self.bucket_size, self.seed = levels, bucket_size, seed
        self.contractive = bool(contractive)
        self.unbiased = not self.contractive
        self.width = max(1, math.ceil(math.log2(2 * levels + 1)))

    def omega(self, d: int) -> float:
        """Variance bound factor for a tensor of d entries (per bucket, the worst one)."""
        n = d if self.bucket_size is None else min(d, self.bucket_size)
        return qsgd_omega(n, self.levels)

    def _generator(self, state: dict | None, device: torch.device) -> torch.Generator:
        state = {} if state is None else state
        g = state.get("generator")
        # compare the device we created it for ("cuda" vs "cuda:0" must not reseed every call)
        if g is None or state.get("generator_device") != device:
            g = torch.Generator(device=device)
            g.manual_seed(int(self.seed))
            state["generator"] = g
            state["generator_device"] = device
        return g

    def signed_levels(self, x: Tensor, state: dict | None = None) -> tuple[Tensor, Tensor, int, int]:
        """(signed levels sign(x) floor(s |x| / ||x||_b + u) as a float (nb, b) array, bucket norms, numel,
        bucket size); the random draws come from `state`'s generator (seeded with `seed`)."""
        flat = x.detach().reshape(-1).float()
        d = flat.numel()
        if not bool(torch.isfinite(flat).all()):
            raise ValueError("QSGD: the input has non-finite values (did training diverge?)")
        b = d if self.bucket_size is None else self.bucket_size
        b = max(b, 1)
        nb = math.ceil(d / b)
        if nb * b == d:
            buckets = flat.view(nb, b)
        else:
            buckets = torch.zeros(nb * b, dtype=flat.dtype, device=flat.device)
            buckets[:d] = flat
            buckets = buckets.view(nb, b)
        norms = torch.linalg.vector_norm(buckets, dim=1)
        safe = torch.where(norms > 0, norms, torch.ones_like(norms))
        u = torch.rand(buckets.shape, generator=self._generator(state, flat.device), device=flat.device)
        levels = torch.floor(self.levels * buckets.abs() / safe[:, None] + u).clamp_(max=self.levels)
        return torch.sign(buckets).mul_(levels), norms, d, b

    def compress(self, x: Tensor, state: dict | None = None) -> Payload:
        signed, norms, d, b = self.signed_levels(x, state)
        packed = pack_bits(signed.reshape(-1)[:d].to(torch.int64) + self.levels, self.width)
        meta = {"shape": x.shape, "dtype": x.dtype, "numel": d, "bucket": b}
        return Payload({"norms": norms, "levels": packed}, meta)

    def roundtrip(self, x: Tensor, state: dict | None = None) -> tuple[Tensor, int]:
        """(decompress(compress(x, state)), its wire bits) without packing the levels.

        For a message that is decoded where it is made (MCM's downlink runs on every rank):
        the same random draws and the same values as the packed path, minus the bit packing.
        """
        signed, norms, d, b = self.signed_levels(x, state)
        out = (signed * (norms[:, None] / self.levels)).reshape(-1)[:d] + 0.0  # + 0.0: no -0.0
        if self.contractive:
            out = out / (1.0 + self.omega(d))
        bits = tensor_bits(norms) + 8 * math.ceil(d * self.width / 8)
        return out.reshape(x.shape).to(x.dtype), bits

    def decompress(self, payload: Payload) -> Tensor:
        m = payload.meta
        d, b = m["numel"], m["bucket"]
        norms = payload.tensors["norms"]
        signed = unpack_bits(payload.tensors["levels"], self.width, d) - self.levels
        nb = norms.numel()
        vals = torch.zeros(nb * b, dtype=norms.dtype, device=norms.device)
        vals[:d] = signed.to(norms.dtype)
        out = (vals.view(nb, b) * (norms[:, None] / self.levels)).reshape(-1)[:d]
        if self.contractive:
            out = out / (1.0 + self.omega(d))
        return out.reshape(m["shape"]).to(m["dtype"])

    def entropy_symbols(self, payload: Payload) -> tuple[list[np.ndarray], int]:
        """The signed levels in [-s, s] are coded; the bucket norms travel raw."""
        t = payload.tensors
        levels = unpack_bits(t["levels"], self.width, payload.meta["numel"]) - self.levels
        return [levels.cpu().numpy()], tensor_bits(t["norms"])

    def decompress_many(self, payloads: list[Payload]) -> Tensor:
        """Decode the messages of several workers (same tensor, same layout) in one batched op.

        Returns a (len(payloads), numel) float tensor whose row r equals
        `decompress(payloads[r]).reshape(-1)` (in float32).
        """
        if not payloads:
            raise ValueError("QSGD.decompress_many: no payloads")
        m = payloads[0].meta
        d, b = m["numel"], m["bucket"]
        if any(p.meta["numel"] != d or p.meta["bucket"] != b for p in payloads):
            raise ValueError("QSGD.decompress_many: payloads of different sizes or buckets")
        norms = torch.stack([p.tensors["norms"] for p in payloads])  # (R, nb)
        packed = torch.stack([p.tensors["levels"] for p in payloads])
        signed = unpack_rows(packed, self.width, d) - self.levels
        rows, nb = norms.shape
        if nb * b == d:
            vals = signed.to(norms.dtype).view(rows, nb, b)
        else:
            vals = torch.zeros(rows, nb * b, dtype=norms.dtype, device=norms.device)
            vals[:, :d] = signed.to(norms.dtype)
            vals = vals.view(rows, nb, b)
        out = (vals * (norms / self.levels)[:, :, None]).reshape(rows, nb * b)[:, :d]
        if self.contractive:
            out = out / (1.0 + self.omega(d))
        return out


class QSGDLevels:
    """QSGD's levels as a scalar quantizer (`coders.quantizers` interface), for entropy coding.

    quantize(x) -> Quantized: symbols k = sign(x) floor(s |x| / ||x||_b + u) in [-s, s] (QSGD's
    stochastic rounding, Alistarh et al. 2017), reconstruction k * ||x||_b / s, i.e. a per-bucket
    scale ||x||_b / s with step 1 in the model domain x s / ||x||_b (`normalize`). In that domain
    sign(t) floor(|t| + u) has the law of stochastic rounding floor(t + u), which is what a
    family model of a stochastic quantizer assumes (`coders.models.stochastic_rounding_probs`).
    Decoder data: the fp32 bucket norms (`side_bits` = 32 per bucket); the scales are the fp32
    ||x||_b / s the receiver computes from them.
    """

    stochastic = True

    def __init__(self, levels: int = 16, bucket_size: int = 512, seed: int = 0):
        if bucket_size is None or bucket_size < 1:
            raise ValueError(f"QSGDLevels: bucket_size must be >= 1, got {bucket_size}")
        self.qsgd = QSGD(levels, bucket_size, seed=seed)
        self.levels, self.bucket_size = int(levels), int(bucket_size)
        self.state: dict = {}
        self._last: tuple[Tensor, Tensor] | None = None

    @property
    def name(self) -> str:
        return f"qsgd(s={self.levels},b={self.bucket_size})"

    def scales(self, norms: Tensor) -> np.ndarray:
        """Per-bucket reconstruction scale ||x||_b / s (float32, what travels in place of the norm)."""
        return (norms.float() / self.levels).cpu().numpy()

    def quantize(self, x: Tensor | np.ndarray) -> Quantized:
        """Symbols and decoder data of x; draws fresh rounding noise on every call."""
        t = torch.as_tensor(x)
        signed, norms, d, b = self.qsgd.signed_levels(t, self.state)
        symbols = signed.reshape(-1)[:d].to(torch.int64).cpu().numpy()
        self._last = (t, norms)
        return self.quantized(symbols, self.scales(norms), tuple(t.shape), str(t.device))

    def quantized(self, symbols: np.ndarray, scales: np.ndarray, shape: tuple,
                  device: str | None) -> Quantized:
        """The `Quantized` of given symbols and fp32 bucket scales (what a receiver rebuilds)."""
        cells = UniformCells(step=1.0, bounds=(-self.levels, self.levels), stochastic=True, scales=scales,
                             block_size=self.bucket_size)
        return Quantized(symbols=symbols, shape=shape, method=self.name, cells=cells,
                         side_bits=32 * scales.size, torch_device=device)

    def normalize(self, x: Tensor | np.ndarray) -> np.ndarray:
        """Model-domain values x s / ||x||_b (flat), with the norms of the last `quantize` of this x."""
        t = torch.as_tensor(x)
        if self._last is not None and self._last[0] is t:
            norms = self._last[1]
        else:
            norms = self.qsgd.signed_levels(t, {"generator": torch.Generator(device=t.device)})[1]
        a = t.detach().reshape(-1).float().cpu().numpy()
        scale = np.repeat(self.scales(norms), self.bucket_size)[: a.size]
        return a / np.where(scale > 0, scale, 1.0)

    def dequantize(self, q: Quantized):
        """x_hat = k ||x||_b / s."""
        return q.dequantize()
