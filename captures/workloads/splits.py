"""How a workload's data is dealt to W workers: IID shards, or the label skew of McMahan et al. 2017."""

from __future__ import annotations

import numpy as np

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
