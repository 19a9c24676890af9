"""What every recorder shares: layer specs, host buffers, the background writer thread, closing."""

from __future__ import annotations

import atexit
import os
import queue
import threading
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from captures.recorder.sampling import sample_indices, sample_size
from captures.recorder.shards import _local, _shard_of
from captures.store import KINDS, CaptureWriteError, CaptureWriter, LayerSpec
from captures.store.files import _dtype_name
from captures.summary import layer_summary


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
