"""GradientRecorder: the gradients (and updates) the optimizer sees, at each step boundary.

How a step is recorded is described in :mod:`captures.recorder`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from captures.recorder.layers import WRAPPER_PREFIXES, LayerSelector, named_parameters, select_layers
from captures.recorder.recording import _Recording
from captures.recorder.shards import _local


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
