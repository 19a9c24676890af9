"""Sampling a layer: how many entries (``sample=``), and the fixed seeded indices of each layer."""

from __future__ import annotations

import zlib

import numpy as np


def sample_size(numel: int, sample: int | float | None) -> int | None:
    """Number of entries to keep of a ``numel``-entry layer; None means the full tensor.

    ``sample`` int: that many entries (layers no larger are kept whole); float in (0, 1]: that fraction
    (at least one entry).
    """
    if sample is None:
        return None
    if isinstance(sample, bool):
        raise ValueError("sample must be None, an int >= 1 or a float in (0, 1]")
    if isinstance(sample, (int, np.integer)):
        if sample < 1:
            raise ValueError(f"sample as a count must be >= 1, got {sample}")
        k = int(sample)
    elif isinstance(sample, (float, np.floating)):
        if not 0.0 < sample <= 1.0:
            raise ValueError(f"sample as a fraction must be in (0, 1], got {sample}")
        k = max(1, int(round(float(sample) * numel)))
    else:
        raise ValueError(f"sample must be None, an int or a float, got {type(sample).__name__}")
    return None if k >= numel else k


def parse_sample(text: str | None) -> int | float | None:
    """Parse a command-line ``--sample``: ``"100000"`` or ``"1e5"`` -> count, ``"0.01"`` -> fraction.

    ``"none"``/``"full"``/empty -> None (full tensors). A value in (0, 1] written with a decimal point
    or exponent is a fraction (``"1.0"`` = all entries); an integral value >= 1 is a count.
    """
    if text is None or str(text).strip().lower() in ("", "none", "full"):
        return None
    text = str(text).strip()
    problem = f"--sample must be a count >= 1 (e.g. 100000) or a fraction in (0, 1] (e.g. 0.01), got {text!r}"
    if text.lstrip("+-").isdigit():
        if int(text) < 1:
            raise ValueError(problem)
        return int(text)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(problem) from None
    if 0.0 < value <= 1.0:
        return value
    if value > 1.0 and value.is_integer():
        return int(value)
    raise ValueError(problem)


def sample_indices(name: str, numel: int, k: int, seed: int) -> np.ndarray:
    """``k`` distinct sorted flat indices of ``range(numel)``, a function of (seed, name) only."""
    rng = np.random.default_rng([int(seed), zlib.crc32(name.encode())])
    return np.sort(rng.choice(numel, size=k, replace=False)).astype(np.int64)
