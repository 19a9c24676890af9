"""write_capture: a capture made from in-memory arrays (test fixtures, synthetic data)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from captures.store.files import _dtype_name
from captures.store.manifest import LayerSpec
from captures.store.reader import Capture, open_capture
from captures.store.writer import CaptureWriter


def write_capture(
    path: str | os.PathLike,
    grads: Mapping[int, Mapping[str, np.ndarray | torch.Tensor]],
    *,
    updates: Mapping[int, Mapping[str, np.ndarray | torch.Tensor]] | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    indices: Mapping[str, np.ndarray] | None = None,
    rank: int = 0,
    world_size: int = 1,
    model: str = "arrays",
    every: int | None = None,
    overwrite: bool = False,
) -> Capture:
    """Write a capture from in-memory arrays ``{step: {layer: values}}`` (e.g. test fixtures); open it.

    Layers are taken in the order of the first step's dict; every layer's values keep their dtype.
    For a sampled layer give ``indices[layer]`` (flat indices into the full tensor) and its full
    ``shapes[layer]``; the values are then the 1-D entries at those indices. ``updates`` (same form)
    adds the ``"update"`` kind. Call once per rank with ``rank``/``world_size`` for a multi-rank capture.
    """
    if not grads:
        raise ValueError("grads is empty: give at least one step")
    indices = dict(indices or {})
    shapes = dict(shapes or {})
    first = next(iter(grads.values()))
    specs = []
    for name, values in first.items():
        t = torch.as_tensor(values)
        idx = indices.get(name)
        if idx is not None:
            if name not in shapes:
                raise ValueError(f"layer {name!r} is sampled: give its full shape in shapes[{name!r}]")
            idx = np.asarray(idx, dtype=np.int64)
            if t.ndim != 1 or len(t) != len(idx):
                raise ValueError(f"layer {name!r}: sampled values must be 1-D with len(indices)={len(idx)}, "
                                 f"got shape {tuple(t.shape)}")
            shape = tuple(int(s) for s in shapes[name])
            if len(idx) and (idx.min() < 0 or idx.max() >= int(np.prod(shape))):
                raise ValueError(f"layer {name!r}: indices out of range for shape {shape}")
        else:
            shape = tuple(int(s) for s in shapes.get(name, t.shape))
            if tuple(t.shape) != shape:
                raise ValueError(f"layer {name!r}: values have shape {tuple(t.shape)}, shapes says {shape}")
        dt = _dtype_name(t.dtype)
        specs.append(LayerSpec(name, shape, dt, dt, idx))
    kinds = ("grad", "update") if updates else ("grad",)
    writer = CaptureWriter(path, specs, kinds=kinds, rank=rank, world_size=world_size, model=model,
                           every=every, sample=None if not indices else "given", seed=None,
                           overwrite=overwrite, durable=False)
    by_name = {s.name: s for s in specs}
    steps = sorted(set(grads) | set(updates or {}))
    for step in steps:
        tensors: dict[str, torch.Tensor] = {}
        for kind, source in (("grad", grads), ("update", updates or {})):
            for name, values in source.get(step, {}).items():
                if name not in by_name:
                    raise ValueError(f"step {step}: layer {name!r} is not in the first step's layers")
                t = torch.as_tensor(values).detach().cpu().contiguous()
                spec = by_name[name]
                want = (spec.stored_numel,) if spec.indices is not None else spec.shape
                if tuple(t.shape) != tuple(want):
                    raise ValueError(f"step {step} {kind} {name!r}: shape {tuple(t.shape)}, expected {want}")
                tensors[f"{kind}/{name}"] = t.clone()  # no shared storage between entries
        writer.write_step(int(step), tensors)
    writer.finish()
    return open_capture(path)
