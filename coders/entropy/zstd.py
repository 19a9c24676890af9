"""zstandard on the symbol bytes (narrowest integer dtype; the model is ignored), and the raw
float32 / bf16 baseline `zstd_raw_bits`."""

from __future__ import annotations

from typing import Any

import numpy as np

RAW_CHUNK = 1 << 20
"""Entries per zstd frame of the raw baseline (the stream's default chunk)."""


def _compress(data: bytes, level: int) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=level).compress(data)


class ZstdCoder:
    """zstd(level) of each chunk's symbols as bytes; no model, no side bits."""

    name = "zstd"
    wire_id = 4
    uses_model = False

    def __init__(self, level: int = 3) -> None:
        self.level = level

    def code_probs(self, model: Any = None) -> None:
        """None: zstd has no probability model."""
        return None

    def encode_chunk(self, values: np.ndarray, model: Any = None) -> bytes:
        return _compress(values.tobytes(), self.level)

    def chunk_bits(self, values: np.ndarray, model: Any = None) -> int:
        """8 bits per compressed byte."""
        return 8 * len(self.encode_chunk(values))

    def encode_chunk_counted(self, values: np.ndarray, model: Any = None) -> tuple[bytes, int]:
        data = self.encode_chunk(values)
        return data, 8 * len(data)

    def decode_chunk(self, data: bytes, model: Any, count: int, dtype: Any) -> np.ndarray:
        import zstandard

        try:
            raw = zstandard.ZstdDecompressor().decompress(data)
        except zstandard.ZstdError as err:
            raise ValueError(f"is corrupt: {err}") from err
        vals = np.frombuffer(raw, dtype=dtype)
        if vals.size != count:
            raise ValueError("has the wrong length")
        return vals


def zstd_raw_bits(x: Any, dtype: str = "float32", level: int = 3) -> int:
    """Bits of zstd(level) on the raw float32 or bf16 bytes of x (the baseline a user tries first)."""
    import torch

    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    t = t.reshape(-1)
    if dtype == "float32":
        raw = t.float().numpy().tobytes()
    elif dtype in ("bfloat16", "bf16"):
        raw = t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
    else:
        raise ValueError(f"zstd_raw_bits: dtype must be float32 or bf16, got {dtype!r}")
    if not raw:
        return 0
    step = RAW_CHUNK * 4
    return 8 * sum(len(_compress(raw[i : i + step], level)) for i in range(0, len(raw), step))
