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

Modules: :mod:`~captures.workloads.base` (:class:`Workload`), :mod:`~captures.workloads.splits`,
:mod:`~captures.workloads.digits`, :mod:`~captures.workloads.stdlib_lm`; this package holds the registry
:data:`WORKLOADS`, :func:`make_workload` and :func:`capture_workload`. A new workload is one module with a
:class:`Workload` subclass, and one line in :data:`WORKLOADS`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from captures.progress import Progress, open_bar
from captures.workloads.base import Batch, Workload
from captures.workloads.digits import DigitsCNN, DigitsMLP
from captures.workloads.splits import SPLITS, iid_shards, label_skew_shards
from captures.workloads.stdlib_lm import (
    VOCAB_SIZE,
    Block,
    CausalSelfAttention,
    CharTransformer,
    LMConfig,
    StdlibLM,
    encode_chars,
    stdlib_text,
)

if TYPE_CHECKING:
    from captures.store import Capture

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
    progress: Progress = True,
    **options: Any,
) -> Capture:
    """Train workload ``name`` for ``steps`` optimizer steps recording every ``every``-th; open the capture.

    The final evaluation metrics and the loss curve go into ``manifest["extra"]``. ``progress``: a
    bar over the steps (True: tqdm; or a bar factory, see :mod:`captures.progress`).
    """
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
        bar = open_bar(progress, total=steps, desc=f"capture {name}", unit="step")
        try:
            for _ in range(steps):
                losses.append(wl.step())
                bar.update(1)
                if len(losses) % 10 == 0:
                    bar.set_postfix_str(f"loss={losses[-1]:.3f}")
        finally:
            bar.close()
        rec.extra.update(
            {"losses": losses, "eval": wl.evaluate(wl.model), "metric_name": wl.metric_name})
    return open_capture(out_dir)


__all__ = [
    "SPLITS",
    "VOCAB_SIZE",
    "WORKLOADS",
    "Batch",
    "Block",
    "CausalSelfAttention",
    "CharTransformer",
    "DigitsCNN",
    "DigitsMLP",
    "LMConfig",
    "StdlibLM",
    "Workload",
    "capture_workload",
    "encode_chars",
    "iid_shards",
    "label_skew_shards",
    "make_workload",
    "stdlib_text",
]
