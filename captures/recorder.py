"""GradientRecorder: record per-layer gradients (and parameter updates) of real training to a capture.

How a step is recorded (training step ``t`` is recorded when ``t % every == 0``, ``t`` counted from 0):

1. **What is recorded: what the optimizer sees.** At the step boundary every selected parameter whose
   ``p.grad`` is not None is recorded, its *accumulated* ``p.grad`` read once: in the pre-hook of the
   optimizer that holds it (when the recorder drives itself from optimizers), or in
   ``recorder.step()`` (manual mode: call it after the parameter update, before the next
   ``zero_grad``). So a parameter unused in a step is recorded as the zeros that
   ``zero_grad(set_to_none=False)`` left (the optimizer consumes them: momentum, weight decay), and is
   absent after ``zero_grad(set_to_none=True)`` (the optimizer skips it); when optimizers drive the
   recorder, a parameter that no optimizer holds is not recorded. Gradient accumulation over
   micro-batches (or DDP's ``no_sync``) gives one record of the sum.
2. **One training step, however many optimizers.** With several optimizers (Adam on embeddings +
   AdamW on the rest, a GAN's two) a training step ends when every optimizer seen in the first step
   has stepped, or when one steps a second time; each parameter is recorded in the pre-hook of its own
   optimizer. ``update`` is x_{t+1} - x_t around that optimizer's step (manual mode: from a snapshot
   taken by the first ``post_accumulate_grad`` hook of the step).
3. Each value is sampled (a fixed, seeded, sorted set of flat indices per layer, the same for the whole
   capture so per-entry time series exist), cast to ``dtype``, or reduced to moments + a histogram
   (``summary_only``) on the parameter's device, then copied into a reusable host buffer (pinned memory
   and ``non_blocking`` copies on CUDA) and handed to a background writer thread through a bounded
   queue (on the CPU, summary-only moments are computed there, off the training thread). The writer
   waits for the copy's CUDA event, writes the step file atomically, and returns the buffer; when all
   ``queue_size`` buffers are in flight, training waits (back-pressure), so host memory stays bounded.

Names: tied weights (one parameter under two names, e.g. ``lm_head.weight`` = ``wte.weight``) are
recorded once under the first name in model order; the other names are listed in
``manifest["aliases"]``, select the parameter and read it back (``capture.get("lm_head.weight", t)``).
Wrapper prefixes (``module.`` of DDP, ``_orig_mod.`` of ``torch.compile``) are stripped from the
front of every name unless ``strip_prefixes=()``.

FSDP2 (``fully_shard``, DTensor parameters): each rank records its local shard (``p.grad.to_local()``),
with the shard's global shape, offset and placements in its manifest (``manifest["shards"]``);
``Capture.get_full`` puts the ranks' shards back together.

Under DDP ``p.grad`` at the step boundary is the all-reduced (averaged) gradient. What each worker
sends *before* the all-reduce is recorded by :class:`CommHookRecorder`, a DDP communication hook that
wraps any other hook.
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

from captures.store import KINDS, CaptureWriteError, CaptureWriter, LayerSpec, _dtype_name
from captures.summary import layer_summary

LayerSelector = str | Sequence[str] | Callable[[str, nn.Parameter], bool] | None
#: wrapper prefixes stripped from parameter names by default (DDP / FSDP1 ``module.``, torch.compile)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def strip_wrapper_prefixes(name: str, prefixes: Sequence[str] = WRAPPER_PREFIXES) -> str:
    """``name`` without the wrapper ``prefixes`` at its front (repeatedly: ``module._orig_mod.fc.w``)."""
    changed = True
    while changed:
        changed = False
        for pre in prefixes:
            if pre and name.startswith(pre) and len(name) > len(pre):
                name, changed = name[len(pre):], True
    return name


def named_parameters(model: nn.Module, strip_prefixes: Sequence[str] = WRAPPER_PREFIXES
                     ) -> tuple[dict[str, nn.Parameter], dict[str, str]]:
    """(trainable parameters by name in model order, aliases): every name of a tied parameter after
    the first maps to the first in ``aliases``; names are taken through :func:`strip_wrapper_prefixes`."""
    params: dict[str, nn.Parameter] = {}
    aliases: dict[str, str] = {}
    first: dict[int, str] = {}
    raw_of: dict[str, str] = {}
    for raw, p in model.named_parameters(remove_duplicate=False):
        if not p.requires_grad:
            continue
        name = strip_wrapper_prefixes(raw, strip_prefixes)
        if name in raw_of and raw_of[name] != raw:
            raise ValueError(f"stripping wrapper prefixes {tuple(strip_prefixes)} makes {raw_of[name]!r} and "
                             f"{raw!r} both {name!r}; pass strip_prefixes=() to keep full names")
        raw_of[name] = raw
        if id(p) in first:
            if name != first[id(p)]:
                aliases[name] = first[id(p)]
        else:
            first[id(p)] = name
            params[name] = p
    return params, aliases


def select_layers(model: nn.Module, layers: LayerSelector,
                  strip_prefixes: Sequence[str] = WRAPPER_PREFIXES) -> dict[str, nn.Parameter]:
    """The trainable parameters of ``model`` picked by ``layers``, in model order, by recorded name.

    ``None``: all; a string: an ``fnmatch`` glob on the parameter name (``"*.weight"``); a list: exact
    names; a callable ``(name, param) -> bool``. Aliases of tied parameters select them too (recorded
    under the first name); names are matched after :func:`strip_wrapper_prefixes`.
    """
    params, aliases = named_parameters(model, strip_prefixes)
    every_name = [(n, p) for n, p in params.items()] + [(a, params[t]) for a, t in aliases.items()]

    def canonical(n: str) -> str:
        return aliases.get(n, n)

    if layers is None:
        picked = set(params)
    elif isinstance(layers, str):
        picked = {canonical(n) for n, _ in every_name if fnmatch.fnmatchcase(n, layers)}
        if not picked:
            raise ValueError(f"layer glob {layers!r} matches no trainable parameter; names are e.g. "
                             f"{list(params)[:5]}")
    elif callable(layers):
        picked = {canonical(n) for n, p in every_name if layers(n, p)}
    else:
        wanted = [strip_wrapper_prefixes(w, strip_prefixes) for w in layers]
        missing = [w for w in wanted if w not in params and w not in aliases]
        if missing:
            raise ValueError(f"unknown or frozen parameter(s) {missing}; names are e.g. {list(params)[:5]}")
        picked = {canonical(w) for w in wanted}
    if not picked:
        raise ValueError("no parameter selected for recording")
    return {n: p for n, p in params.items() if n in picked}


def _local(t: Tensor) -> Tensor:
    """The local piece of a DTensor (FSDP2 shard); any other tensor as is."""
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) and hasattr(t, "placements") else t


def _shard_of(p: Tensor) -> dict[str, Any] | None:
    """Where this rank's piece of a DTensor parameter sits in the whole: shapes, offset, placements."""
    if not hasattr(p, "placements") or not hasattr(p, "device_mesh"):
        return None
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    local_shape, offset = compute_local_shape_and_global_offset(p.shape, p.device_mesh, p.placements)
    return {"global_shape": list(p.shape), "local_shape": list(local_shape), "global_offset": list(offset),
            "placements": [repr(pl) for pl in p.placements], "mesh_shape": list(p.device_mesh.shape)}


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


def _dist_rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is None or world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world_size = dist.get_world_size() if world_size is None else world_size
        else:
            rank = 0 if rank is None else rank
            world_size = 1 if world_size is None else world_size
    return int(rank), int(world_size)


class _Recording:
    """What every recorder shares: layer specs and sampling, host buffers, the writer thread, closing.

    A subclass decides when a step starts and ends and calls :meth:`_put_grad` / :meth:`_put` while a
    step is open and :meth:`_end_step` at its end.
    """

    def __init__(
        self,
        params: dict[str, Tensor],
        aliases: dict[str, str],
        out_dir: str | os.PathLike,
        *,
        every: int,
        sample: int | float | None,
        what: Sequence[str],
        dtype: torch.dtype | None,
        summary_only: bool,
        hist_bins: int,
        seed: int,
        rank: int | None,
        world_size: int | None,
        queue_size: int,
        model_name: str,
        overwrite: bool,
        extra: dict[str, Any] | None,
        durable: bool,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
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
        rank, world_size = _dist_rank_world(rank, world_size)
        self.every = int(every)
        #: merged into ``manifest["extra"]`` when the recorder closes (e.g. final metrics)
        self.extra: dict[str, Any] = {}
        self.what = tuple(what)
        self.dtype = dtype
        self.summary_only = bool(summary_only)
        self.hist_bins = int(hist_bins)
        self.params = params
        self.aliases = {a: t for a, t in aliases.items() if t in params}
        self.step_count = 0
        self.steps_recorded: list[int] = []

        self._idx: dict[str, Tensor] = {}
        specs = []
        for name, p in params.items():
            local = _local(p.detach())
            k = sample_size(local.numel(), sample)
            idx = None if k is None else sample_indices(name, local.numel(), k, seed)
            if idx is not None:
                self._idx[name] = torch.from_numpy(idx).to(local.device)
            stored = "float64" if summary_only else _dtype_name(dtype or p.dtype)
            specs.append(LayerSpec(name, tuple(local.shape), _dtype_name(p.dtype), stored, idx, _shard_of(p)))
        devices = sorted({str(_local(p.detach()).device) for p in params.values()})
        self._cuda_devices = sorted({_local(p.detach()).device for p in params.values()
                                     if _local(p.detach()).device.type == "cuda"}, key=str)
        self._writer = CaptureWriter(
            out_dir, specs, kinds=self.what, rank=rank, world_size=world_size, model=model_name,
            every=self.every, sample=sample, seed=seed, summary_only=summary_only,
            hist_bins=self.hist_bins if summary_only else 0, device=",".join(devices), extra=extra,
            aliases=self.aliases, overwrite=overwrite, durable=durable,
        )
        self.out_dir = self._writer.dir
        self.rank, self.world_size = rank, world_size

        # per-step state
        self._buffers: dict[str, Tensor] | None = None
        self._keys: list[str] = []

        # writer thread, bounded pool of host buffer sets
        self._queue_size = int(queue_size)
        self._n_buffer_sets = 0
        self._free: queue.Queue[dict[str, Tensor]] = queue.Queue()
        self._work: queue.Queue[Any] = queue.Queue(maxsize=self._queue_size)
        self._error: BaseException | None = None
        self._closed = False
        self._hooks: list[Any] = []
        self._thread = threading.Thread(target=self._write_loop, name="GradientRecorder-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # a recorder never closed still writes its queued records at exit

    # --- context manager ------------------------------------------------------------------------
    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:  # the recorded block raised (or Ctrl-C): the capture is not complete
            self.close(aborted=exc_type.__name__ + (f": {exc}" if str(exc) else ""))

    @property
    def recording(self) -> bool:
        """Whether the current training step (``step_count``) is one that gets recorded."""
        return self.step_count % self.every == 0

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
        """Stage one gradient (local shard of a DTensor); a sampled CPU gradient is gathered straight
        into its host buffer."""
        grad = _local(grad)
        if f"grad/{name}" in self._keys or f"raw/grad/{name}" in self._keys \
                or f"moments/grad/{name}" in self._keys:
            return  # already staged this step (a parameter held by two optimizers)
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

    def _end_step(self) -> None:
        """Hand the staged records of step ``step_count`` to the writer; start the next step."""
        if self.recording and self._keys:
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
            if isinstance(err, CaptureWriteError):
                raise err
            raise RuntimeError(f"GradientRecorder writer failed: {err}") from err

    def _finish_open_step(self) -> None:
        """End a step left open at close (subclasses that end steps lazily)."""

    def close(self, aborted: str | None = None) -> None:
        """Write the pending records, stop the writer thread, remove the hooks; mark the capture
        ``complete``, or ``aborted`` with the reason ``aborted`` (also when the writer failed)."""
        if self._closed:
            return
        try:
            self._finish_open_step()
        finally:
            self._closed = True
            atexit.unregister(self.close)
            for h in self._hooks:
                h.remove()
            self._hooks = []
            self._work.put(None)
            self._thread.join()
        if self._error is not None:
            err = self._error
            try:
                self._writer.abort(f"writer failed: {type(err).__name__}: {err}", steps_seen=self.step_count)
            except OSError:
                pass  # e.g. the disk is still full: the writer's own error says so
            self._raise_writer_error()
        if aborted is not None:
            self._writer.abort(aborted, steps_seen=self.step_count, **self.extra)
        else:
            self._writer.finish(steps_seen=self.step_count, **self.extra)


class GradientRecorder(_Recording):
    """Record per-layer gradients (and updates) every ``every`` training steps into ``out_dir``.

    Use as a context manager (an exception or Ctrl-C in the block marks the capture ``aborted`` with
    the reason) or call :meth:`close`. Arguments:

    - ``layers``: glob, list of names or callable (see :func:`select_layers`); aliases of tied weights
      select them too.
    - ``sample``: None (full tensors), int entries per layer or float fraction (see :func:`sample_size`);
      indices are drawn once from ``seed`` and the layer name (over the local shard under FSDP2).
    - ``what``: ``("grad",)``, ``("update",)`` or ``("grad", "update")``.
    - ``dtype``: store as this dtype (e.g. ``torch.float16``); default the parameter's dtype.
    - ``summary_only``: store per-layer moments and a ``hist_bins``-bin histogram instead of tensors.
    - ``optimizer``: ``"auto"`` (default) drives the step count from every optimizer holding recorded
      parameters (global optimizer hooks; several optimizers make one training step, see the module
      docstring); an ``Optimizer`` hooks only that one; ``None`` means manual ``recorder.step()``
      calls only (e.g. an algorithm that updates parameters itself). In ``"auto"`` mode ``step()``
      works as long as no optimizer hook has fired.
    - ``strip_prefixes``: wrapper prefixes removed from names (default ``("module.", "_orig_mod.")``).
    - ``rank``/``world_size``: default from ``torch.distributed`` when initialised, else 0/1.
    - ``queue_size``: host buffers in flight (bounds host memory to ``queue_size`` records).
    - ``durable``: fsync each step file before it is renamed into place.
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
        strip_prefixes: Sequence[str] = WRAPPER_PREFIXES,
        durable: bool = True,
    ) -> None:
        what = (what,) if isinstance(what, str) else tuple(what)
        if optimizer is not None and optimizer != "auto" and not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"optimizer must be 'auto', None or a torch.optim.Optimizer, got {optimizer!r}")
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        params = select_layers(model, layers, strip_prefixes)
        _, aliases = named_parameters(model, strip_prefixes)
        self._name_of = {id(p): n for n, p in params.items()}
        if isinstance(optimizer, torch.optim.Optimizer) and not self._owned(optimizer):
            raise ValueError("the optimizer given holds none of the recorded parameters")
        super().__init__(params, aliases, out_dir, every=every, sample=sample, what=what, dtype=dtype,
                         summary_only=summary_only, hist_bins=hist_bins, seed=seed, rank=rank,
                         world_size=world_size, queue_size=queue_size,
                         model_name=model_name or type(model).__name__, overwrite=overwrite, extra=extra,
                         durable=durable)
        self._snap: dict[str, Tensor] = {}
        #: ids of the optimizers that stepped in the open training step
        self._stepped: set[int] = set()
        #: the optimizers that make up one training step (known after the first; one if given)
        self._step_optimizers: set[int] | None = None
        self._driven_by_optimizer = False
        self._inside_optimizer = False
        self._manual_steps = False
        if "update" in self.what and optimizer != "auto" and not isinstance(optimizer, torch.optim.Optimizer):
            self._add_snapshot_hooks()
        elif "update" in self.what and optimizer == "auto":
            self._add_snapshot_hooks()  # used only if the steps turn out to be manual
        if isinstance(optimizer, torch.optim.Optimizer):
            self._step_optimizers = {id(optimizer)}
            self._hooks.append(optimizer.register_step_pre_hook(self._opt_pre_hook))
            self._hooks.append(optimizer.register_step_post_hook(self._opt_post_hook))
        elif optimizer == "auto":
            from torch.optim.optimizer import (
                register_optimizer_step_post_hook,
                register_optimizer_step_pre_hook,
            )
            self._hooks.append(register_optimizer_step_pre_hook(self._auto_pre_hook))
            self._hooks.append(register_optimizer_step_post_hook(self._auto_post_hook))

    def _add_snapshot_hooks(self) -> None:
        for name, p in self.params.items():
            try:
                self._hooks.append(p.register_post_accumulate_grad_hook(self._make_snapshot_hook(name)))
            except RuntimeError:  # a parameter type without the hook (DTensor): no manual-mode updates
                pass

    # --- hooks ----------------------------------------------------------------------------------
    def _make_snapshot_hook(self, name: str) -> Callable[[Tensor], None]:
        def hook(param: Tensor) -> None:
            # manual mode: x_t before the update, taken once per step (the hook fires per backward)
            if self._closed or self._driven_by_optimizer or not self.recording or name in self._snap:
                return
            self._snap[name] = self._values(name, _local(param.detach())).clone()
        return hook

    def _owned(self, opt: torch.optim.Optimizer) -> list[str]:
        """Names of the recorded parameters that ``opt`` updates, in model order."""
        held = {id(p) for g in opt.param_groups for p in g["params"]}
        return [n for i, n in self._name_of.items() if i in held]

    def _auto_pre_hook(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._owned(opt):
            self._opt_pre_hook(opt, args, kwargs)

    def _auto_post_hook(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._owned(opt):
            self._opt_post_hook(opt, args, kwargs)

    def _opt_pre_hook(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._closed:
            return
        if self._manual_steps:
            raise RuntimeError("GradientRecorder: recorder.step() was called by hand and an optimizer hook "
                               "fired too; pass optimizer=None (manual) or stop calling step()")
        self._raise_writer_error()
        if not self._driven_by_optimizer:
            self._driven_by_optimizer = True
            self._snap.clear()  # manual-mode snapshots taken before we knew
        if id(opt) in self._stepped:  # it steps again: the training step before is over
            if self._step_optimizers is None:
                self._step_optimizers = set(self._stepped)
            self._end_step()
        self._stepped.add(id(opt))
        self._inside_optimizer = True
        if not self.recording:
            return
        names = self._owned(opt)
        if "grad" in self.what:
            for name in names:
                g = self.params[name].grad
                if g is not None:
                    self._acquire_buffers()
                    self._put_grad(name, g.detach())
        if "update" in self.what:
            for name in names:
                if self.params[name].grad is not None:
                    self._snap[name] = self._values(name, _local(self.params[name].detach())).clone()

    def _opt_post_hook(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._closed:
            return
        self._inside_optimizer = False
        if self.recording and "update" in self.what:
            for name in self._owned(opt):
                x_t = self._snap.pop(name, None)
                if x_t is not None:
                    self._acquire_buffers()
                    self._put("update", name, self._values(name, _local(self.params[name].detach())) - x_t)
        if self._step_optimizers is not None and self._stepped >= self._step_optimizers:
            self._end_step()

    def _end_step(self) -> None:
        self._stepped.clear()
        self._snap.clear()
        super()._end_step()

    def _finish_open_step(self) -> None:
        # a step whose optimizers all returned is whole (it ends lazily in auto mode); one interrupted
        # inside optimizer.step() is not written
        if self._stepped and not self._inside_optimizer:
            self._end_step()

    def step(self) -> None:
        """End training step ``step_count`` by hand: record it if due; call after the parameter update."""
        self._raise_writer_error()
        if self._closed:
            raise RuntimeError("GradientRecorder is closed")
        if self._driven_by_optimizer:
            raise RuntimeError("GradientRecorder: steps are already counted by the optimizer hook; "
                               "do not also call recorder.step() (or pass optimizer=None)")
        self._manual_steps = True
        if self.recording:
            if "grad" in self.what:
                for name, p in self.params.items():
                    if p.grad is not None:
                        self._acquire_buffers()
                        self._put_grad(name, p.grad.detach())
            if "update" in self.what:
                for name, p in self.params.items():
                    x_t = self._snap.get(name)
                    if x_t is not None:
                        self._acquire_buffers()
                        self._put("update", name, self._values(name, _local(p.detach())) - x_t)
        self._end_step()


class CommHookRecorder(_Recording):
    """Record each worker's own gradient *before* the all-reduce, from a DDP communication hook.

    ``ddp_model.register_comm_hook(state, recorder.wrap(hook))``: the wrapped hook copies every
    recorded parameter's slice of the bucket (``GradBucket.gradients()``: this rank's local gradient,
    before any averaging) and then hands the bucket to ``hook`` (default: torch's ``allreduce_hook``;
    any hook works: PowerSGD, fp16 compression, the project's own). One training step is one
    synchronising backward (the bucket with ``is_last()`` ends it); steps under ``no_sync`` send
    nothing and are not counted. Each process writes its own rank of the capture (kind ``grad``,
    ``manifest["extra"]["source"] == "ddp_comm_hook"``). ``sample=``, ``dtype=``, ``summary_only=``
    and the other options are those of :class:`GradientRecorder`.
    """

    def __init__(
        self,
        model: nn.Module,
        out_dir: str | os.PathLike,
        every: int = 1,
        layers: LayerSelector = None,
        sample: int | float | None = None,
        dtype: torch.dtype | None = None,
        *,
        summary_only: bool = False,
        hist_bins: int = 64,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        queue_size: int = 4,
        model_name: str | None = None,
        overwrite: bool = False,
        extra: dict[str, Any] | None = None,
        strip_prefixes: Sequence[str] = WRAPPER_PREFIXES,
        durable: bool = True,
    ) -> None:
        params = select_layers(model, layers, strip_prefixes)
        _, aliases = named_parameters(model, strip_prefixes)
        self._name_of = {id(p): n for n, p in params.items()}
        inner = getattr(model, "module", model)
        super().__init__(params, aliases, out_dir, every=every, sample=sample, what=("grad",), dtype=dtype,
                         summary_only=summary_only, hist_bins=hist_bins, seed=seed, rank=rank,
                         world_size=world_size, queue_size=queue_size,
                         model_name=model_name or type(inner).__name__, overwrite=overwrite,
                         extra={"source": "ddp_comm_hook", "before_all_reduce": True, **(extra or {})},
                         durable=durable)
        self._lock = threading.Lock()  # DDP may call hooks from its autograd threads

    def record_bucket(self, bucket: Any) -> None:
        """Copy this rank's gradients of the bucket's recorded parameters; end the step on the last."""
        self._raise_writer_error()
        if self._closed:
            return
        with self._lock:
            if self.recording:
                for p, g in zip(bucket.parameters(), bucket.gradients(), strict=True):
                    name = self._name_of.get(id(p))
                    if name is not None:
                        self._acquire_buffers()
                        self._put_grad(name, g.detach())
            if bucket.is_last():
                self._end_step()

    def wrap(self, hook: Callable[[Any, Any], Any] | None = None) -> Callable[[Any, Any], Any]:
        """A DDP comm hook that records the bucket (:meth:`record_bucket`) and then runs ``hook``."""
        if hook is None:
            from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

            hook = allreduce_hook

        def recording_hook(state, bucket):  # no annotations: DDP checks them against its own types
            self.record_bucket(bucket)
            return hook(state, bucket)

        recording_hook.__name__ = f"recording_{getattr(hook, '__name__', 'hook')}"
        return recording_hook


def recording_comm_hook(recorder: CommHookRecorder,
                        hook: Callable[[Any, Any], Any] | None = None) -> Callable[[Any, Any], Any]:
    """``hook`` (default torch's all-reduce) preceded by ``recorder`` copying each parameter's slice of
    the bucket before the all-reduce; pass to ``DistributedDataParallel.register_comm_hook``."""
    return recorder.wrap(hook)
