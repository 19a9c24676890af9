"""The digits workloads: ``digits-cnn`` and ``mlp`` on scikit-learn's 8x8 handwritten digits (1797 images)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captures.workloads.base import Batch, Workload
from captures.workloads.splits import _DATA_SPLIT_SEED, _check_shard_args, iid_shards, label_skew_shards


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
