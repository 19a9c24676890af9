"""The ``stdlib-lm`` workload: a character causal transformer on Python's standard library source."""

from __future__ import annotations

import math
import os
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captures.workloads.base import Batch, Workload
from captures.workloads.splits import _check_shard_args, iid_shards

# Vocabulary: tab, newline and printable ASCII; every other character maps to one "unknown" id.
_VOCAB = "\t\n" + "".join(chr(c) for c in range(32, 127))
_UNK = len(_VOCAB)
VOCAB_SIZE = len(_VOCAB) + 1
_CHAR_ID = np.full(0x110000, _UNK, dtype=np.uint8)
_CHAR_ID[[ord(c) for c in _VOCAB]] = np.arange(len(_VOCAB), dtype=np.uint8)


def stdlib_text(max_chars: int = 400_000, root: str | os.PathLike | None = None) -> str:
    """The concatenated text of the top-level ``.py`` files of the standard library, in sorted name order.

    Files are read whole until ``max_chars`` is reached (the last one cut); unreadable files are skipped.
    """
    return _stdlib_text_cached(int(max_chars), str(root or sysconfig.get_paths()["stdlib"]))


@lru_cache(maxsize=4)
def _stdlib_text_cached(max_chars: int, root: str) -> str:
    files = sorted(p for p in Path(root).glob("*.py") if p.is_file())
    parts: list[str] = []
    total = 0
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    text = "".join(parts)[:max_chars]
    if len(text) < 10_000:
        raise ValueError(f"found only {len(text)} characters of .py source under {root}; need >= 10000")
    return text


def encode_chars(text: str) -> np.ndarray:
    """Character ids (uint8) of ``text`` in the workload's vocabulary."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return _CHAR_ID[codes]


@dataclass(frozen=True)
class LMConfig:
    """Size of the character transformer and its data."""

    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 256
    seq_len: int = 64
    text_chars: int = 400_000
    eval_fraction: float = 0.1
    eval_sequences: int = 64


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with a causal mask (Vaswani et al. 2017, eq. 1)."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CharTransformer(nn.Module):
    """Decoder-only character language model: token + learned position embeddings, blocks, linear head."""

    def __init__(self, vocab_size: int, cfg: LMConfig) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.n_heads, cfg.d_ff) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, vocab_size)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, idx: Tensor) -> Tensor:
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


class StdlibLM(Workload):
    """Character causal transformer on the standard library's source; metric = held-out loss (nats/char).

    The last ``eval_fraction`` of the text is held out; evaluation uses ``eval_sequences`` fixed,
    evenly spaced windows of it. Keyword arguments override fields of :class:`LMConfig`.
    """

    name = "stdlib-lm"
    metric_name = "loss"
    higher_is_better = False
    default_batch_size = 16
    lr = 3e-3

    def __init__(self, seed: int = 0, device: str | torch.device = "cpu", **config: Any) -> None:
        unknown = set(config) - set(LMConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown stdlib-lm option(s) {sorted(unknown)}; known: "
                             f"{sorted(LMConfig.__dataclass_fields__)}")
        self.config = LMConfig(**config)
        ids = encode_chars(stdlib_text(self.config.text_chars))
        n_eval = int(len(ids) * self.config.eval_fraction)
        if n_eval < self.config.seq_len + 1:
            raise ValueError(f"held-out text ({n_eval} chars) is shorter than one sequence")
        super().__init__(seed, device)
        self.train_ids = torch.from_numpy(ids[: len(ids) - n_eval].astype(np.int64)).to(self.device)
        held = ids[len(ids) - n_eval:].astype(np.int64)
        L = self.config.seq_len + 1
        starts = np.linspace(0, len(held) - L, self.config.eval_sequences).astype(np.int64)
        self._eval_windows = torch.from_numpy(np.stack([held[s:s + L] for s in starts])).to(self.device)

    def _build_model(self) -> nn.Module:
        return CharTransformer(VOCAB_SIZE, self.config)

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=0.0)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        x, y = batch
        logits = model(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def shard_bounds(self, rank: int, world_size: int, split: str, seed: int) -> np.ndarray:
        """Start offsets in the training text of the windows rank ``rank`` may draw.

        ``iid``: the text is cut into windows of ``seq_len + 1`` chars, dealt at random to the ranks.
        ``label-skew``: rank ``r`` gets the ``r``-th contiguous chunk of the text.
        """
        _check_shard_args(rank, world_size, split)
        L = self.config.seq_len + 1
        n = len(self.train_ids)
        if split == "iid":
            return iid_shards(n // L, world_size, seed)[rank] * L
        lo, hi = (n * rank) // world_size, (n * (rank + 1)) // world_size
        if hi - lo < L:
            raise ValueError(f"label-skew chunk of {hi - lo} chars is shorter than one sequence ({L})")
        return np.arange(lo, hi - L + 1)

    _batch_stream = 2
    _shard = shard_bounds

    def _iterate(self, starts: np.ndarray, batch_size: int, rng: np.random.Generator) -> Iterator[Batch]:
        """``(chars, next chars)``, each ``(batch_size, seq_len)`` int64, from random sequence starts."""
        offsets = torch.arange(self.config.seq_len + 1, device=self.device)
        while True:
            s = torch.from_numpy(rng.choice(starts, size=batch_size)).to(self.device)
            w = self.train_ids[s[:, None] + offsets]
            yield w[:, :-1], w[:, 1:]

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Mean next-character cross-entropy (nats) on fixed held-out windows, and bits per character."""
        was_training = model.training
        model.eval()
        w = self._eval_windows
        loss = float(self.loss(model, (w[:, :-1], w[:, 1:])))
        model.train(was_training)
        return {"loss": loss, "bits_per_char": loss / math.log(2)}
