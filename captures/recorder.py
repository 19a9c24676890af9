"""GradientRecorder: record per-layer gradients (and parameter updates) of real training to a capture.

How a step is recorded (optimizer step ``t`` is recorded when ``t % every == 0``, ``t`` counted from 0):

1. ``Tensor.register_post_accumulate_grad_hook`` on every selected parameter marks it as having a
   gradient in this step, and (for ``"update"``) snapshots the parameter x_t the first time it fires
   in the step. The hook fires once per backward, so with gradient accumulation over micro-batches (or
   DDP's ``no_sync``) it fires several times; nothing is copied there.
2. At the step boundary the *accumulated* ``p.grad`` is read once: in the optimizer's step pre-hook
   (when the recorder drives itself from the optimizer), or in ``recorder.step()`` (manual mode, call it
   after the parameter update and before the next ``zero_grad``). ``update`` is x_{t+1} - x_t, taken in
   the optimizer's post-hook or in ``recorder.step()``.
3. Each value is sampled (a fixed, seeded, sorted set of flat indices per layer, the same for the whole
   capture so per-entry time series exist), cast to ``dtype``, or reduced to moments + a histogram
   (``summary_only``) on the parameter's device, then copied into a reusable host buffer (pinned memory
   and ``non_blocking`` copies on CUDA) and handed to a background writer thread through a bounded
   queue (on the CPU, summary-only moments are computed there, off the training thread). The writer
   waits for the copy's CUDA event, writes the step file atomically, and returns the
   buffer; when all ``queue_size`` buffers are in flight, training waits (back-pressure), so host memory
   stays bounded.

Under DDP ``p.grad`` at the step boundary is the all-reduced (averaged) gradient. If no hook fired in a
recorded step (gradients assigned to ``p.grad`` directly instead of by ``backward``), every selected
parameter with a ``p.grad`` is recorded (updates then need a backward pass to snapshot x_t).
"""

from __future__ import annotations

import atexit
import fnmatch
import os
import queue
import threading
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from captures.store import KINDS, CaptureWriter, LayerSpec, _dtype_name
from captures.summary import layer_summary

LayerSelector = str | Sequence[str] | Callable[[str, nn.Parameter], bool] | None


def select_layers(model: nn.Module, layers: LayerSelector) -> dict[str, nn.Parameter]:
    """The trainable parameters of ``model`` picked by ``layers``, in model order.

    ``None``: all; a string: an ``fnmatch`` glob on the parameter name (``"*.weight"``); a list: exact
    names; a callable ``(name, param) -> bool``.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if layers is None:
        chosen = named
    elif isinstance(layers, str):
        chosen = [(n, p) for n, p in named if fnmatch.fnmatchcase(n, layers)]
        if not chosen:
            raise ValueError(f"layer glob {layers!r} matches no trainable parameter; names are e.g. "
                             f"{[n for n, _ in named[:5]]}")
    elif callable(layers):
        chosen = [(n, p) for n, p in named if layers(n, p)]
    else:
        wanted = list(layers)
        names = {n for n, _ in named}
        missing = [w for w in wanted if w not in names]
        if missing:
            raise ValueError(f"unknown or frozen parameter(s) {missing}; names are e.g. "
                             f"{[n for n, _ in named[:5]]}")
        chosen = [(n, p) for n, p in named if n in set(wanted)]
    if not chosen:
        raise ValueError("no parameter selected for recording")
    return dict(chosen)


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


class GradientRecorder:
    """Record per-layer gradients (and updates) every ``every`` optimizer steps into ``out_dir``.

    Use as a context manager or call :meth:`close`. Arguments:

    - ``layers``: glob, list of names or callable (see :func:`select_layers`).
    - ``sample``: None (full tensors), int entries per layer or float fraction (see :func:`sample_size`);
      indices are drawn once from ``seed`` and the layer name.
    - ``what``: ``("grad",)``, ``("update",)`` or ``("grad", "update")``.
    - ``dtype``: store as this dtype (e.g. ``torch.float16``); default the parameter's dtype.
    - ``summary_only``: store per-layer moments and a ``hist_bins``-bin histogram instead of tensors.
    - ``optimizer``: ``"auto"`` (default) drives the step count from any optimizer holding the recorded
      parameters (global optimizer hooks); an ``Optimizer`` hooks only that one; ``None`` means manual
      ``recorder.step()`` calls only (e.g. an algorithm that updates parameters itself). In ``"auto"``
      mode ``step()`` works as long as no optimizer hook has fired.
    - ``rank``/``world_size``: default from ``torch.distributed`` when initialised, else 0/1.
    - ``queue_size``: host buffers in flight (bounds host memory to ``queue_size`` records).
    """

    def __init__(
        self,
        model: nn.Module,
        out_dir: str | os.PathLike,
        every: int = 1,
        layers: LayerSelector = None,
        sample: int | float | None = None,
        what: Sequence[str] = ("grad",),
        dtype: torch.dtype | None = None,
        *,
        summary_only: bool = False,
        hist_bins: int = 64,
        seed: int = 0,
        optimizer: torch.optim.Optimizer | str | None = "auto",
        rank: int | None = None,
        world_size: int | None = None,
        queue_size: int = 4,
        model_name: str | None = None,
        overwrite: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        what = (what,) if isinstance(what, str) else tuple(what)
        if not what or any(k not in KINDS for k in what) or len(set(what)) != len(what):
            raise ValueError(f"what must be a non-empty subset of {KINDS}, got {what}")
        if summary_only and (sample is not None or dtype is not None):
            raise ValueError("summary_only computes moments of the full tensors in float64; "
                             "do not combine it with sample or dtype")
        if summary_only and hist_bins < 1:
            raise ValueError(f"hist_bins must be >= 1, got {hist_bins}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        if optimizer is not None and optimizer != "auto" and not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"optimizer must be 'auto', None or a torch.optim.Optimizer, got {optimizer!r}")
        if rank is None or world_size is None:
            dist = torch.distributed
            if dist.is_available() and dist.is_initialized():
                rank = dist.get_rank() if rank is None else rank
                world_size = dist.get_world_size() if world_size is None else world_size
            else:
                rank = 0 if rank is None else rank
                world_size = 1 if world_size is None else world_size

        self.every = int(every)
        #: merged into ``manifest["extra"]`` when the recorder closes (e.g. final metrics)
        self.extra: dict[str, Any] = {}
        self.what = what
        self.dtype = dtype
        self.summary_only = bool(summary_only)
        self.hist_bins = int(hist_bins)
        self.params = select_layers(model, layers)
        self._param_ids = {id(p) for p in self.params.values()}
        if isinstance(optimizer, torch.optim.Optimizer) and not self._owns(optimizer):
            raise ValueError("the optimizer given holds none of the recorded parameters")
        self.step_count = 0
        self.steps_recorded: list[int] = []

        self._idx: dict[str, Tensor] = {}
        specs = []
        for name, p in self.params.items():
            k = sample_size(p.numel(), sample)
            idx = None if k is None else sample_indices(name, p.numel(), k, seed)
            if idx is not None:
                self._idx[name] = torch.from_numpy(idx).to(p.device)
            stored = "float64" if summary_only else _dtype_name(dtype or p.dtype)
            specs.append(LayerSpec(name, tuple(p.shape), _dtype_name(p.dtype), stored, idx))
        devices = sorted({str(p.device) for p in self.params.values()})
        self._cuda_devices = sorted({p.device for p in self.params.values() if p.device.type == "cuda"},
                                    key=str)
        self._writer = CaptureWriter(
            out_dir, specs, kinds=what, rank=rank, world_size=world_size,
            model=model_name or type(model).__name__, every=self.every, sample=sample, seed=seed,
            summary_only=summary_only, hist_bins=self.hist_bins if summary_only else 0,
            device=",".join(devices), extra=extra, overwrite=overwrite,
        )
        self.out_dir = self._writer.dir

        # per-step state
        self._touched: set[str] = set()
        self._snap: dict[str, Tensor] = {}
        self._buffers: dict[str, Tensor] | None = None
        self._keys: list[str] = []

        # writer thread, bounded pool of host buffer sets
        self._queue_size = int(queue_size)
        self._n_buffer_sets = 0
        self._free: queue.Queue[dict[str, Tensor]] = queue.Queue()
        self._work: queue.Queue[Any] = queue.Queue(maxsize=self._queue_size)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_loop, name="GradientRecorder-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # a recorder never closed still writes its queued records at exit

        self._hooks = [p.register_post_accumulate_grad_hook(self._make_grad_hook(name))
                       for name, p in self.params.items()]
        self._driven_by_optimizer = False
        self._manual_steps = False
        self._closed = False
        if isinstance(optimizer, torch.optim.Optimizer):
            self._hooks.append(optimizer.register_step_pre_hook(self._opt_pre_hook))
            self._hooks.append(optimizer.register_step_post_hook(self._opt_post_hook))
        elif optimizer == "auto":
            from torch.optim.optimizer import (
                register_optimizer_step_post_hook,
                register_optimizer_step_pre_hook,
            )
            self._hooks.append(register_optimizer_step_pre_hook(self._auto_pre_hook))
            self._hooks.append(register_optimizer_step_post_hook(self._auto_post_hook))

    # --- context manager ------------------------------------------------------------------------
    def __enter__(self) -> GradientRecorder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def recording(self) -> bool:
        """Whether the current optimizer step (``step_count``) is one that gets recorded."""
        return self.step_count % self.every == 0

    # --- hooks ----------------------------------------------------------------------------------
    def _make_grad_hook(self, name: str) -> Callable[[Tensor], None]:
        def hook(param: Tensor) -> None:
            if self._closed or not self.recording:
                return
            self._touched.add(name)
            if "update" in self.what and name not in self._snap:
                self._snap[name] = self._values(name, param.detach()).clone()
        return hook

    def _owns(self, opt: torch.optim.Optimizer) -> bool:
        return any(id(p) in self._param_ids for g in opt.param_groups for p in g["params"])

    def _auto_pre_hook(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._owns(opt):
            self._opt_pre_hook(opt, args, kwargs)

    def _auto_post_hook(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._owns(opt):
            self._opt_post_hook(opt, args, kwargs)

    def _opt_pre_hook(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._closed:
            return
        if self._manual_steps:
            raise RuntimeError("GradientRecorder: recorder.step() was called by hand and an optimizer hook "
                               "fired too; pass optimizer=None (manual) or stop calling step()")
        self._driven_by_optimizer = True
        if self.recording:
            self._stage_grads()

    def _opt_post_hook(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._closed:
            return
        self._finish_step()

    def step(self) -> None:
        """End optimizer step ``step_count`` by hand: record it if due; call after the parameter update."""
        self._raise_writer_error()
        if self._closed:
            raise RuntimeError("GradientRecorder is closed")
        if self._driven_by_optimizer:
            raise RuntimeError("GradientRecorder: steps are already counted by the optimizer hook; "
                               "do not also call recorder.step() (or pass optimizer=None)")
        self._manual_steps = True
        if self.recording:
            self._stage_grads()
        self._finish_step()

    # --- the work of one recorded step ----------------------------------------------------------
    def _values(self, name: str, t: Tensor) -> Tensor:
        idx = self._idx.get(name)
        return t if idx is None else t.reshape(-1).index_select(0, idx)

    def _buffer(self, key: str, like: Tensor, shape: tuple[int, ...] | None = None) -> Tensor:
        """The host buffer for ``key`` with ``like``'s dtype and ``shape`` (default ``like``'s)."""
        assert self._buffers is not None
        shape = tuple(like.shape) if shape is None else shape
        buf = self._buffers.get(key)
        if buf is None or tuple(buf.shape) != shape or buf.dtype != like.dtype:
            buf = torch.empty(shape, dtype=like.dtype, pin_memory=like.device.type == "cuda")
            self._buffers[key] = buf
        return buf

    def _put_grad(self, name: str, grad: Tensor) -> None:
        """Stage one gradient; a sampled CPU gradient is gathered straight into its host buffer."""
        idx = self._idx.get(name)
        if (idx is not None and grad.device.type == "cpu" and not self.summary_only
                and self.dtype in (None, grad.dtype)):
            key = f"grad/{name}"
            torch.index_select(grad.reshape(-1), 0, idx, out=self._buffer(key, grad, (idx.numel(),)))
            self._keys.append(key)
        else:
            self._put("grad", name, self._values(name, grad))

    def _put(self, kind: str, name: str, value: Tensor) -> None:
        """Reduce ``value`` (already sampled) as configured and start its copy into a host buffer."""
        if self.summary_only and value.device.type == "cpu":
            # On the CPU the reduction runs in the writer thread (on another core), off the training path.
            items = [(f"raw/{kind}/{name}", value)]
        elif self.summary_only:
            moments, counts = layer_summary(value, self.hist_bins)
            items = [(f"moments/{kind}/{name}", moments), (f"hist/{kind}/{name}", counts)]
        else:
            items = [(f"{kind}/{name}", value if self.dtype is None else value.to(self.dtype))]
        for key, src in items:
            self._buffer(key, src).copy_(src, non_blocking=src.device.type == "cuda")
            self._keys.append(key)

    def _acquire_buffers(self) -> None:
        if self._buffers is not None:
            return
        if self._n_buffer_sets < self._queue_size:
            try:
                self._buffers = self._free.get_nowait()
            except queue.Empty:
                self._n_buffer_sets += 1
                self._buffers = {}
        else:
            while self._buffers is None:  # back-pressure: wait for the writer to return a buffer set
                self._raise_writer_error()
                try:
                    self._buffers = self._free.get(timeout=1.0)
                except queue.Empty:
                    continue
        self._keys = []

    def _stage_grads(self) -> None:
        if "grad" not in self.what:
            return
        if not self._touched:
            # No hook fired: the gradients were assigned to p.grad directly (e.g. by a simulator that
            # averages them itself). Record every selected parameter that has one.
            self._touched = {n for n, p in self.params.items() if p.grad is not None}
            if not self._touched:
                return
        self._acquire_buffers()
        for name, p in self.params.items():
            if name in self._touched and p.grad is not None:
                self._put_grad(name, p.grad.detach())

    def _finish_step(self) -> None:
        if self.recording and (self._touched or self._keys):
            if "update" in self.what:
                self._acquire_buffers()
                for name, p in self.params.items():
                    if name in self._snap:
                        self._put("update", name, self._values(name, p.detach()) - self._snap[name])
            if self._keys:
                events = []
                for dev in self._cuda_devices:
                    ev = torch.cuda.Event()
                    ev.record(torch.cuda.current_stream(dev))
                    events.append(ev)
                self._raise_writer_error()
                self._work.put((self.step_count, self._buffers, list(self._keys), events))
                self.steps_recorded.append(self.step_count)
                self._buffers = None
                self._keys = []
        self._touched.clear()
        self._snap.clear()
        self.step_count += 1

    # --- writer thread --------------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            step, buffers, keys, events = item
            try:
                if self._error is None:
                    for ev in events:
                        ev.synchronize()
                    tensors = {}
                    for k in keys:
                        if k.startswith("raw/"):
                            moments, counts = layer_summary(buffers[k], self.hist_bins)
                            tensors["moments/" + k[4:]] = moments
                            tensors["hist/" + k[4:]] = counts
                        else:
                            tensors[k] = buffers[k]
                    self._writer.write_step(step, tensors)
            except BaseException as e:  # handed to the training thread at its next step
                self._error = e
            finally:
                self._free.put(buffers)

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            err = self._error
            raise RuntimeError(f"GradientRecorder writer failed: {err}") from err

    def close(self) -> None:
        """Write the pending records, stop the writer thread, remove the hooks, mark the capture complete."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._work.put(None)
        self._thread.join()
        self._raise_writer_error()
        self._writer.finish(steps_seen=self.step_count, **self.extra)
