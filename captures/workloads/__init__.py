"""Built-in training workloads on data that ships with the installed packages (no download).

- ``digits-cnn``: a small CNN on scikit-learn's ``load_digits`` (8x8 grey images, 10 classes).
- ``mlp``: a two-hidden-layer perceptron on the same digits.
- ``stdlib-lm``: a small causal transformer language model on the characters of the ``.py`` files of
  Python's own standard library (``sysconfig.get_paths()["stdlib"]``), metric = held-out loss (nats/char).

Every workload has the same small interface (ARCHITECTURE.md, "Capture"): ``.model`` and ``.optimizer``
for single-process training, ``.make_model()`` for W identical replicas (same initial weights for the
same seed), ``.loss(model, batch)``, ``.batches(rank, world_size, batch_size, split, seed)`` giving each
rank its own shard (``"iid"`` or ``"label-skew"``), ``.evaluate(model)`` and ``.step()``.

Non-IID split for digits (``"label-skew"``): the pathological shards of McMahan et al. 2017
("Communication-Efficient Learning of Deep Networks from Decentralized Data", sec. 3): sort the
training set by label, cut it into 2W shards and give each worker two of them, so each worker sees
about two classes. For the language model, ``"label-skew"`` gives each worker a contiguous chunk of the
text (different source files, hence different character statistics).
"""

from __future__ import annotations

import math
import os
import sysconfig
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from captures.store import Capture

Batch = tuple[Tensor, Tensor]

SPLITS = ("iid", "label-skew")

# The train/test split of the data is fixed (independent of the workload seed) so that metrics from
# runs with different seeds are comparable.
_DATA_SPLIT_SEED = 20240611


def _check_shard_args(rank: int, world_size: int, split: str) -> None:
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


class Workload:
    """A model, its data and its default optimizer; the shared interface of all built-in workloads."""

    name: str = ""
    metric_name: str = ""
    higher_is_better: bool = True
    default_batch_size: int = 32
    #: learning rate of the workload's own optimizer (``.optimizer``); a reasonable SGD/Adam start.
    lr: float = 0.1

    def __init__(self, seed: int = 0, device: str | torch.device = "cpu") -> None:
        self.seed = int(seed)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but torch.cuda.is_available() is False")
        self.model = self.make_model()
        self.optimizer = self.make_optimizer(self.model)
        self._train_iter: Iterator[Batch] | None = None

    # --- to be provided by each workload -------------------------------------------------------------
    def _build_model(self) -> nn.Module:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        """Mean training loss of ``model`` on ``batch`` (a scalar with a graph)."""
        raise NotImplementedError

    def _shard(self, rank: int, world_size: int, split: str, seed: int) -> np.ndarray:
        """What rank ``rank`` draws its batches from (sample indices, sequence starts, ...)."""
        raise NotImplementedError

    def _iterate(self, shard: np.ndarray, batch_size: int, rng: np.random.Generator) -> Iterator[Batch]:
        raise NotImplementedError

    #: keeps the batch streams of different workloads apart for the same (seed, rank)
    _batch_stream: int = 0

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Held-out metrics of ``model``; the dict holds ``self.metric_name``."""
        raise NotImplementedError

    def batches(
        self,
        rank: int = 0,
        world_size: int = 1,
        batch_size: int | None = None,
        split: str = "iid",
        seed: int = 0,
    ) -> Iterator[Batch]:
        """Infinite iterator of ``(inputs, targets)`` on ``self.device`` from rank ``rank``'s shard."""
        batch_size = self.default_batch_size if batch_size is None else int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        shard = self._shard(rank, world_size, split, seed)
        return self._iterate(shard, batch_size, np.random.default_rng([seed, rank, self._batch_stream]))

    # --- shared -----------------------------------------------------------------------------------
    def make_model(self) -> nn.Module:
        """A fresh replica on ``self.device``; the same initial weights for the same seed, on any device."""
        # Build on the CPU under a forked RNG so the init depends on the seed only (not on the device or
        # on whatever consumed the global RNG before).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = self._build_model()
        return model.to(self.device)

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The workload's default optimizer for ``model``."""
        return torch.optim.SGD(model.parameters(), lr=self.lr, momentum=0.9)

    def step(self) -> float:
        """One forward/backward/optimizer step of ``.model`` with ``.optimizer``; returns the loss."""
        if self._train_iter is None:
            self._train_iter = self.batches(0, 1, seed=self.seed)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.model, next(self._train_iter))
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, seed={self.seed}, device={str(self.device)!r}, "
                f"params={self.n_params()})")


# ------------------------------------------------------------------------------------------------------
# digits: scikit-learn's 8x8 handwritten digits (1797 images)
# ------------------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): float32 images in [0, 1] of shape (n, 1, 8, 8), 20% held out."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None, :, :]
    y = data.target.astype(np.int64)
    order = np.random.default_rng(_DATA_SPLIT_SEED).permutation(len(y))
    n_test = len(y) // 5
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def label_skew_shards(
    labels: np.ndarray, world_size: int, seed: int, shards_per_worker: int = 2
) -> list[np.ndarray]:
    """Indices of each worker's shard for the pathological non-IID split (McMahan et al. 2017, sec. 3).

    Sort by label (stable), cut into ``shards_per_worker * world_size`` contiguous shards, and deal them
    to the workers in a seeded random order. Every index lands in exactly one worker's shard.
    """
    order = np.argsort(labels, kind="stable")
    pieces = np.array_split(order, shards_per_worker * world_size)
    deal = np.random.default_rng(seed).permutation(len(pieces))
    return [np.sort(np.concatenate([pieces[j] for j in deal[w::world_size]])) for w in range(world_size)]


def iid_shards(n: int, world_size: int, seed: int) -> list[np.ndarray]:
    """A seeded random partition of ``range(n)`` into ``world_size`` near-equal shards."""
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(perm[w::world_size]) for w in range(world_size)]


class _DigitsWorkload(Workload):
    metric_name = "accuracy"
    higher_is_better = True
    default_batch_size = 32
    lr = 0.05

    def __init__(self, seed: int = 0, device: str | torch.device = "cpu", **options: Any) -> None:
        if options:
            raise ValueError(f"workload {self.name!r} takes no options, got {sorted(options)}")
        x_tr, y_tr, x_te, y_te = _digits_arrays()
        self.train_labels = y_tr
        super().__init__(seed, device)
        self._x_train = torch.from_numpy(x_tr).to(self.device)
        self._y_train = torch.from_numpy(y_tr).to(self.device)
        self._x_test = torch.from_numpy(x_te).to(self.device)
        self._y_test = torch.from_numpy(y_te).to(self.device)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    def shard_indices(self, rank: int, world_size: int, split: str, seed: int) -> np.ndarray:
        """Training-set indices of rank ``rank``'s shard."""
        _check_shard_args(rank, world_size, split)
        if split == "iid":
            return iid_shards(len(self.train_labels), world_size, seed)[rank]
        return label_skew_shards(self.train_labels, world_size, seed)[rank]

    _batch_stream = 1
    _shard = shard_indices

    def _iterate(self, shard: np.ndarray, batch_size: int, rng: np.random.Generator) -> Iterator[Batch]:
        """``(images, labels)``: reshuffled epochs over the shard."""
        shard_t = torch.from_numpy(shard).to(self.device)
        n = len(shard)
        while True:
            perm = torch.from_numpy(rng.permutation(n)).to(self.device)
            # Drop the ragged end of each epoch so that every batch has the same size; a shard smaller
            # than one batch gives the whole shard as each batch.
            for start in range(0, max(n - batch_size, 0) + 1, batch_size):
                idx = shard_t[perm[start:start + batch_size]]
                yield self._x_train[idx], self._y_train[idx]

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Test accuracy and mean cross-entropy on the 359 held-out images."""
        was_training = model.training
        model.eval()
        logits = model(self._x_test)
        model.train(was_training)
        loss = F.cross_entropy(logits, self._y_test)
        acc = (logits.argmax(dim=1) == self._y_test).float().mean()
        return {"accuracy": float(acc), "loss": float(loss)}


class DigitsCNN(_DigitsWorkload):
    """Two 3x3 convs (16, 32 channels), 2x2 max-pool, a 64-unit hidden layer, 10 logits (~38k params)."""

    name = "digits-cnn"

    def _build_model(self) -> nn.Module:
        return nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(1, 16, 3, padding=1)),
            ("relu1", nn.ReLU()),
            ("conv2", nn.Conv2d(16, 32, 3, padding=1)),
            ("relu2", nn.ReLU()),
            ("pool", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(32 * 4 * 4, 64)),
            ("relu3", nn.ReLU()),
            ("fc2", nn.Linear(64, 10)),
        ]))


class DigitsMLP(_DigitsWorkload):
    """64 -> 128 -> 64 -> 10 perceptron with ReLU (~17k params)."""

    name = "mlp"

    def _build_model(self) -> nn.Module:
        return nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(64, 128)),
            ("relu1", nn.ReLU()),
            ("fc2", nn.Linear(128, 64)),
            ("relu2", nn.ReLU()),
            ("fc3", nn.Linear(64, 10)),
        ]))


# ------------------------------------------------------------------------------------------------------
# stdlib-lm: characters of Python's standard library source
# ------------------------------------------------------------------------------------------------------

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


WORKLOADS: dict[str, Callable[..., Workload]] = {
    DigitsCNN.name: DigitsCNN,
    StdlibLM.name: StdlibLM,
    DigitsMLP.name: DigitsMLP,
}


def make_workload(name: str, seed: int = 0, device: str | torch.device = "cpu", **options: Any) -> Workload:
    """Build the built-in workload ``name`` (one of :data:`WORKLOADS`) with weights seeded by ``seed``.

    ``options`` go to the workload (``stdlib-lm`` accepts :class:`LMConfig` fields, e.g. ``d_model=256``).
    """
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; choose one of {sorted(WORKLOADS)}")
    return WORKLOADS[name](seed=seed, device=device, **options)


def capture_workload(
    name: str,
    out_dir: str | os.PathLike,
    steps: int = 300,
    every: int = 25,
    sample: int | float | None = None,
    what: tuple[str, ...] = ("grad",),
    summary_only: bool = False,
    device: str | torch.device = "cpu",
    seed: int = 0,
    *,
    layers: str | None = None,
    dtype: torch.dtype | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **options: Any,
) -> Capture:
    """Train workload ``name`` for ``steps`` optimizer steps recording every ``every``-th; open the capture.

    The final evaluation metrics and the loss curve go into ``manifest["extra"]``.
    """
    from tqdm.auto import tqdm

    from captures.recorder import GradientRecorder
    from captures.store import open_capture

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    wl = make_workload(name, seed=seed, device=device, **options)
    losses: list[float] = []
    with GradientRecorder(wl.model, out_dir, every=every, layers=layers, sample=sample, what=what,
                          dtype=dtype, summary_only=summary_only, seed=seed, optimizer=wl.optimizer,
                          model_name=name, overwrite=overwrite,
                          extra={"workload": name, "options": options}) as rec:
        bar = tqdm(range(steps), desc=f"capture {name}", unit="step", disable=not progress)
        for _ in bar:
            losses.append(wl.step())
            if len(losses) % 10 == 0:
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
        rec.extra.update(
            {"losses": losses, "eval": wl.evaluate(wl.model), "metric_name": wl.metric_name})
    return open_capture(out_dir)
