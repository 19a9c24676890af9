"""Record what each worker's method compresses during `train(..., capture=DIR)` (issue 12).

Per worker (capture rank = worker), on the recorded steps (`every`: step 1, 1 + every, ...):

    grad               the worker's own gradient p.grad, before any averaging
    update             x_{t+1} - x_t of the worker's parameters (what the step applied)
    compressor_input   what the method's compressor gets (`Algorithm.record`): g + e under error
                       feedback (topk-ef, qsgd-ef, ...), lr m + e for EF-signSGD, the momentum
                       before the sign for Signum-MV, the matrix M = g + e for PowerSGD (matrices
                       only), Delta_i = g_i - h_i for MCM's uplink (from step 2: step 1 sends
                       the gradient itself, `grad`), x_i - x_hat_i for Choco,
                       v = x + delta for DeepSqueeze
    downlink_input     MCM's server message before compression, w - H
    model_diff         gossip methods: x_i - x_j for every neighbour j, the difference PowerGossip's
                       power steps approximate (one extra exchange of the model on recorded steps,
                       not counted in the method's bits; training is unchanged)

Layout. The capture store admits only the kinds `grad` and `update` (`captures.store.KINDS`), so
the method kinds are sub-captures, each a valid capture read with `open_capture` (its values
stored under the store's kind "grad", the real kind in its manifest's `extra["kind"]`):

    DIR/                                 grad, update
    DIR/compressor_input/                compressor_input
    DIR/downlink_input/                  downlink_input (MCM)
    DIR/model_diff/neighbour<j>/         x_i - x_j of each worker i adjacent to j (rank i)

`open_method_capture(DIR)` reads all of them with one `get(layer, step, rank, kind, neighbour)`;
`location(kind, neighbour)` is the one place that maps a kind to its directory.
Sampling (`sample`: None, a count or a fraction per layer) uses the recorder's fixed seeded
indices (`captures.recorder.sample_indices`), the same for every kind and worker.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from captures import CaptureWriter, open_capture
from captures.recorder import sample_indices, sample_size
from captures.store import LayerSpec

__all__ = ["MethodCapture", "MethodCaptureReader", "open_method_capture", "location", "KINDS",
           "METHOD_KINDS"]

METHOD_KINDS = ("compressor_input", "downlink_input", "model_diff")
"""What methods record through `Algorithm.record`."""
KINDS = ("grad", "update", *METHOD_KINDS)
_NEIGHBOUR_DIR = re.compile(r"^neighbour(\d+)$")


def location(kind: str, neighbour: int | None = None) -> tuple[str, str]:
    """(sub-directory of the capture, kind in the store) where records of `kind` live."""
    if kind not in KINDS:
        raise ValueError(f"unknown capture kind {kind!r}; choose from {KINDS}")
    if kind in ("grad", "update"):
        return "", kind
    if kind == "model_diff":
        if neighbour is None:
            raise ValueError("kind 'model_diff' needs the neighbour j of x_i - x_j")
        return os.path.join("model_diff", f"neighbour{int(neighbour)}"), "grad"
    return kind, "grad"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class MethodCapture:
    """One worker's recorder: attach to its algorithm (`algo.attach_recorder`), bracket each step.

        cap.begin_step(step); cap.record_grads(grads); snapshot = cap.snapshot(params)
        algo.step(lr)                       # the method calls cap.record(kind, values, neighbour)
        cap.record_update(params, snapshot); cap.end_step()
        ...; cap.finish()  (or cap.abort(reason))
    """

    def __init__(self, out_dir: str | os.PathLike, names: Sequence[str], params: Sequence[Tensor], *,
                 rank: int, world_size: int, method: str, every: int = 1,
                 sample: int | float | None = None, seed: int = 0, model: str = ""):
        if int(every) != every or every < 1:
            raise ValueError(f"capture_every must be a positive integer, got {every}")
        if len(names) != len(params):
            raise ValueError(f"{len(names)} names for {len(params)} parameters")
        self.dir = Path(out_dir)
        self.names = list(names)
        self.params = list(params)
        self.rank, self.world_size = int(rank), int(world_size)
        self.every, self.sample, self.seed = int(every), sample, int(seed)
        self.method, self.model = method, model
        self.indices: list[np.ndarray | None] = []
        self._index_t: list[Tensor | None] = []
        for name, p in zip(self.names, self.params, strict=True):
            k = sample_size(p.numel(), sample)
            idx = None if k is None else sample_indices(name, p.numel(), k, self.seed)
            self.indices.append(idx)
            self._index_t.append(None if idx is None else torch.from_numpy(idx).to(p.device))
        self._writers: dict[str, CaptureWriter] = {}
        self._kinds_seen: dict[str, list] = {}
        self.step: int | None = None
        self.active = False
        self._buffer: dict[tuple[str, int | None], dict[int, Tensor]] = {}
        self._writer("", ("grad", "update"), {i: p.dtype for i, p in enumerate(self.params)})

    # --- the recorder protocol (coders.algorithms.base.Algorithm.record) --------------------------
    def wants(self, kind: str) -> bool:
        """True on the recorded steps (every rank agrees: it depends on the step only)."""
        return self.active

    def record(self, kind: str, values: dict[int, Tensor], neighbour: int | None = None) -> None:
        """Keep (sampled, on the CPU) the tensors of `kind` of this step; written at `end_step`."""
        if not self.active:
            return
        location(kind, neighbour)  # validates the kind
        slot = self._buffer.setdefault((kind, None if neighbour is None else int(neighbour)), {})
        for i, v in values.items():
            flat = v.detach().reshape(-1)
            idx = self._index_t[i]
            slot[i] = (flat if idx is None else flat[idx]).to("cpu", copy=True)

    # --- what the runtime records itself ----------------------------------------------------------
    def begin_step(self, step: int) -> None:
        """Start training step `step` (1-based); recorded when (step - 1) % every == 0."""
        self.step = int(step)
        self.active = (self.step - 1) % self.every == 0
        self._buffer = {}

    def record_grads(self, grads: Sequence[Tensor]) -> None:
        self.record("grad", dict(enumerate(grads)))

    def snapshot(self) -> list[Tensor] | None:
        """The parameters before the step (None off the recorded steps)."""
        return [p.detach().clone() for p in self.params] if self.active else None

    def record_update(self, before: list[Tensor] | None) -> None:
        if before is not None:
            self.record("update", {i: p.detach() - b for i, (p, b) in enumerate(zip(self.params, before,
                                                                                      strict=True))})

    def end_step(self) -> None:
        """Write this step's records, one file per capture directory."""
        if not self.active:
            return
        by_dir: dict[str, dict[str, Tensor]] = {}
        for (kind, neighbour), values in self._buffer.items():
            sub, store_kind = location(kind, neighbour)
            writer = self._writers.get(sub)
            if writer is None:
                writer = self._writer(sub, (store_kind,), {i: v.dtype for i, v in values.items()},
                                      kind=kind, neighbour=neighbour)
            stored = {s.name: s.stored_dtype for s in writer.layers}
            tensors = by_dir.setdefault(sub, {})
            for i, v in values.items():
                name = self.names[i]
                tensors[f"{store_kind}/{name}"] = v.to(getattr(torch, stored[name])).reshape(self._shape(i))
            self._kinds_seen.setdefault(kind, [])
            if neighbour is not None and neighbour not in self._kinds_seen[kind]:
                self._kinds_seen[kind].append(neighbour)
        for sub, tensors in by_dir.items():
            self._writers[sub].write_step(self.step, tensors)
        self._buffer = {}

    def finish(self) -> None:
        """Mark every capture of this worker complete (the root manifest lists the kinds recorded)."""
        root = self._writers.pop("")
        for w in self._writers.values():
            w.finish()
        root.finish(method=self.method, method_kinds={k: sorted(v) for k, v in self._kinds_seen.items()})

    def abort(self, reason: str) -> None:
        """Mark every capture of this worker aborted with `reason` (where the store supports it)."""
        for w in self._writers.values():
            if hasattr(w, "abort"):
                w.abort(reason)
            else:
                w.finish(aborted=reason)

    # --- internals --------------------------------------------------------------------------------
    def _shape(self, i: int) -> tuple[int, ...]:
        idx = self.indices[i]
        return tuple(self.params[i].shape) if idx is None else (len(idx),)

    def _writer(self, sub: str, kinds: tuple[str, ...], dtypes: dict[int, torch.dtype],
                kind: str | None = None, neighbour: int | None = None) -> CaptureWriter:
        specs = []
        for i, (name, p) in enumerate(zip(self.names, self.params, strict=True)):
            stored = _dtype_name(dtypes.get(i, p.dtype))
            specs.append(LayerSpec(name, tuple(p.shape), _dtype_name(p.dtype), stored, self.indices[i]))
        extra: dict[str, Any] = {"method": self.method, "runtime": "coders.runtime.train"}
        if kind is not None:
            extra.update({"kind": kind, "stored_as": kinds[0]})
        if neighbour is not None:
            extra["neighbour"] = int(neighbour)
        writer = CaptureWriter(self.dir / sub, specs, kinds=kinds, rank=self.rank, world_size=self.world_size,
                               model=self.model, every=self.every, sample=self.sample, seed=self.seed,
                               extra=extra)
        self._writers[sub] = writer
        return writer


class MethodCaptureReader:
    """All the captures of a `train(..., capture=DIR)` run: `get(layer, step, rank, kind, neighbour)`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.root = open_capture(self.path)
        self._subs: dict[tuple[str, int | None], Any] = {}

    @property
    def kinds(self) -> list[str]:
        """The kinds recorded (`grad`, `update` and the method kinds that have a directory)."""
        out = list(self.root.kinds)
        for kind in METHOD_KINDS:
            if (self.path / kind).is_dir():
                out.append(kind)
        return out

    def neighbours(self, rank: int | None = None) -> list[int]:
        """Neighbours with `model_diff` records (of `rank`, or of anyone)."""
        base = self.path / "model_diff"
        if not base.is_dir():
            return []
        found = []
        for d in sorted(base.iterdir()):
            m = _NEIGHBOUR_DIR.match(d.name)
            if m and (rank is None or rank in self.capture("model_diff", int(m.group(1))).ranks):
                found.append(int(m.group(1)))
        return sorted(found)

    def capture(self, kind: str, neighbour: int | None = None) -> Any:
        """The `captures.Capture` holding `kind` (of `neighbour` for model_diff)."""
        sub, _ = location(kind, neighbour)
        if not sub:
            return self.root
        key = (kind, neighbour)
        if key not in self._subs:
            if not (self.path / sub).is_dir():
                raise ValueError(f"{self.path}: no {kind!r} records"
                                 + (f" for neighbour {neighbour}" if neighbour is not None else "")
                                 + f"; recorded kinds: {self.kinds}")
            self._subs[key] = open_capture(self.path / sub)
        return self._subs[key]

    def get(self, layer: str, step: int, rank: int = 0, kind: str = "grad", neighbour: int | None = None,
            as_torch: bool = False) -> Any:
        """The recorded values (see `captures.Capture.get`) of one kind."""
        _, store_kind = location(kind, neighbour)
        return self.capture(kind, neighbour).get(layer, step, rank=rank, kind=store_kind, as_torch=as_torch)


def open_method_capture(path: str | os.PathLike) -> MethodCaptureReader:
    """Open the capture directory written by `train(..., capture=path)`."""
    return MethodCaptureReader(path)
