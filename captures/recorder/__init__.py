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

Modules: :mod:`~captures.recorder.layers` (selection, aliases, wrapper prefixes),
:mod:`~captures.recorder.sampling`, :mod:`~captures.recorder.shards` (FSDP2),
:mod:`~captures.recorder.recording` (buffers and the writer thread every recorder shares),
:mod:`~captures.recorder.gradient` (:class:`GradientRecorder`) and :mod:`~captures.recorder.comm_hook`
(:class:`CommHookRecorder`). Every name is importable from ``captures.recorder``.
"""

from captures.recorder.comm_hook import CommHookRecorder, recording_comm_hook
from captures.recorder.gradient import GradientRecorder
from captures.recorder.layers import (
    WRAPPER_PREFIXES,
    LayerSelector,
    named_parameters,
    select_layers,
    strip_wrapper_prefixes,
)
from captures.recorder.sampling import parse_sample, sample_indices, sample_size

__all__ = [
    "WRAPPER_PREFIXES",
    "CommHookRecorder",
    "GradientRecorder",
    "LayerSelector",
    "named_parameters",
    "parse_sample",
    "recording_comm_hook",
    "sample_indices",
    "sample_size",
    "select_layers",
    "strip_wrapper_prefixes",
]
