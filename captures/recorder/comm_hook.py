"""CommHookRecorder: each DDP worker's own gradient before the all-reduce, from a comm hook."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from captures.recorder.layers import WRAPPER_PREFIXES, LayerSelector, named_parameters, select_layers
from captures.recorder.recording import _Recording


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
