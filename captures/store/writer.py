"""CaptureWriter: one rank's writer of a capture directory (holds the rank's lock; finish or abort)."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from captures.store.errors import CaptureFileError
from captures.store.files import _atomic_save_tensors, _atomic_write, _write_bytes
from captures.store.layout import (
    FORMAT,
    FORMAT_VERSION,
    KINDS,
    MANIFEST,
    _stale_temp_files,
    indices_file_name,
    rank_manifest_name,
    rank_step_files,
    step_file_name,
)
from captures.store.lock import _acquire_lock, _release_lock, fcntl
from captures.store.manifest import LayerSpec, _json_default


class CaptureWriter:
    """Writes one rank's part of a capture directory: manifests, sampled indices, one file per step.

    ``layers`` fixes the parameters, their shapes and the sampled indices for the whole capture. The
    writer holds rank ``rank``'s lock until :meth:`finish` or :meth:`abort` (a second writer of the
    same rank gets :class:`CaptureBusyError`). ``overwrite=False`` refuses a directory that already
    holds this rank's manifest; ``True`` first removes this rank's files and its dead writers' temp
    files (and, on rank 0, ``manifest.json``). ``durable=True`` fsyncs each step file before renaming
    it (manifests always). ``aliases`` maps other names of a recorded parameter (tied weights) to the
    recorded name.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        layers: Sequence[LayerSpec],
        *,
        kinds: Sequence[str] = ("grad",),
        rank: int = 0,
        world_size: int = 1,
        model: str = "",
        every: int | None = 1,
        sample: int | float | str | None = None,
        seed: int | None = 0,
        summary_only: bool = False,
        hist_bins: int = 0,
        device: str = "cpu",
        extra: Mapping[str, Any] | None = None,
        aliases: Mapping[str, str] | None = None,
        overwrite: bool = False,
        durable: bool = True,
    ) -> None:
        kinds = tuple(kinds)
        bad = [k for k in kinds if k not in KINDS]
        if bad or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {kinds}")
        if not layers:
            raise ValueError("a capture needs at least one layer")
        names = [spec.name for spec in layers]
        if len(set(names)) != len(names):
            raise ValueError("layer names must be unique")
        aliases = dict(aliases or {})
        wrong = {a: t for a, t in aliases.items() if t not in names or a in names}
        if wrong:
            raise ValueError(f"aliases must map new names to recorded layers, got {wrong}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.dir = Path(out_dir)
        self.rank = int(rank)
        self.layers = list(layers)
        self.kinds = kinds
        self.summary_only = bool(summary_only)
        self.durable = bool(durable)
        self.steps_written: list[int] = []
        self._lock_fd: int | None = None
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.dir.is_symlink() and not self.dir.is_dir():
            raise CaptureFileError(self.dir, "is a dangling symbolic link")
        steps = self.dir / "steps"
        if steps.is_symlink() or (steps.exists() and not steps.is_dir()):
            raise CaptureFileError(steps, "is not a directory of this capture (a link or a file); "
                                          "refusing to write through it")
        steps.mkdir(exist_ok=True)
        self._lock_fd = _acquire_lock(self.dir, self.rank)
        try:
            own_manifest = self.dir / rank_manifest_name(self.rank)
            if own_manifest.exists() or any(steps.glob(rank_step_files(self.rank))):
                if not overwrite:
                    raise ValueError(f"{self.dir} already holds a capture for rank {self.rank}; "
                                     "choose a new directory or pass overwrite=True "
                                     "(--overwrite on the command line)")
                self._remove_own_files()
            elif overwrite:
                self._remove_own_files()  # only dead writers' temp files can be there
            self.manifest: dict[str, Any] = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "model": model,
                "layers": names,
                "shapes": {s.name: list(s.global_shape) for s in layers},
                "dtypes": {s.name: s.dtype for s in layers},
                "stored_dtypes": {s.name: s.stored_dtype for s in layers},
                "stored_numel": {s.name: s.stored_numel for s in layers},
                "sampled": {s.name: s.indices is not None for s in layers},
                "kinds": list(kinds),
                "every": every,
                "sample": sample,
                "seed": seed,
                "summary_only": self.summary_only,
                "hist_bins": int(hist_bins),
                "torch_version": torch.__version__,
                "device": str(device),
                "world_size": int(world_size),
                "rank": self.rank,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "status": "recording",
                "checksum": "crc32",
                "extra": dict(extra or {}),
            }
            if aliases:
                self.manifest["aliases"] = aliases
            shards = {s.name: dict(s.shard) for s in layers if s.shard}
            if shards:
                self.manifest["shards"] = shards
            sampled = {s.name: torch.from_numpy(np.asarray(s.indices, dtype=np.int64))
                       for s in layers if s.indices is not None}
            if sampled:
                _atomic_save_tensors(self.dir / indices_file_name(self.rank), sampled,
                                     {"format": FORMAT, "rank": str(self.rank)})
            self._write_manifest()
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        _release_lock(self.dir, self.rank, fd)

    def _remove_own_files(self) -> None:
        r = self.rank
        for p in (self.dir / "steps").glob(rank_step_files(r)):
            p.unlink()
        for p in (self.dir / rank_manifest_name(r), self.dir / indices_file_name(r)):
            p.unlink(missing_ok=True)
        if r == 0:
            (self.dir / MANIFEST).unlink(missing_ok=True)
        for p in _stale_temp_files(self.dir, r):  # we hold rank r's lock: their writers are dead
            p.unlink(missing_ok=True)

    def _write_manifest(self) -> None:
        data = (json.dumps(self.manifest, indent=1, default=_json_default) + "\n").encode()
        _atomic_write(self.dir / rank_manifest_name(self.rank), lambda t: _write_bytes(t, data), True)
        if self.rank == 0:
            _atomic_write(self.dir / MANIFEST, lambda t: _write_bytes(t, data), True)

    def write_step(self, step: int, tensors: Mapping[str, torch.Tensor]) -> Path:
        """Atomically write the record of optimizer ``step``: CPU tensors named ``"<kind>/<layer>"``."""
        if self._lock_fd is None and fcntl is not None:
            raise RuntimeError(f"{self.dir}: the writer of rank {self.rank} was closed")
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        path = self.dir / "steps" / step_file_name(step, self.rank)
        _atomic_save_tensors(path, tensors, {"format": FORMAT, "step": str(step), "rank": str(self.rank)},
                             durable=self.durable)
        self.steps_written.append(int(step))
        return path

    def finish(self, **extra: Any) -> None:
        """Mark this rank's capture complete in its manifest; merge ``extra`` into ``manifest["extra"]``."""
        self._close("complete", None, extra)

    def abort(self, reason: str, **extra: Any) -> None:
        """Mark this rank's capture ``aborted`` with ``reason`` (the steps written stay readable)."""
        self._close("aborted", str(reason), extra)

    def _close(self, status: str, reason: str | None, extra: Mapping[str, Any]) -> None:
        if self._lock_fd is None and fcntl is not None:
            return  # already closed
        try:
            self.manifest["status"] = status
            if reason is not None:
                self.manifest["abort_reason"] = reason
            self.manifest["n_records"] = len(self.steps_written)
            self.manifest["extra"].update(extra)
            self._write_manifest()
        finally:
            self._release()
