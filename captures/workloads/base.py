"""Workload: a model, its data and its default optimizer; the interface every built-in workload has."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor, nn

Batch = tuple[Tensor, Tensor]


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
