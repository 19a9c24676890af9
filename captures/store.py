"""The on-disk capture: ``manifest.json`` plus one safetensors file per recorded (step, rank).

Layout of a capture directory::

    manifest.json                       rank 0's manifest (what ``Capture.manifest`` returns)
    manifest.rank<r>.json               every rank's own manifest (device, rank, status, shards)
    indices.rank<r>.safetensors         sampled flat indices per layer (only when sampling)
    steps/<step:09d>.rank<r>.safetensors  one file per recorded optimizer step and rank
    .lock.rank<r>                       held (``flock``) by the one live writer of rank r

A step file holds tensors named ``"<kind>/<layer>"`` (kind ``grad`` or ``update``); a summary-only
capture holds ``"moments/<kind>/<layer>"`` (float64, fields :data:`captures.summary.MOMENT_FIELDS`) and
``"hist/<kind>/<layer>"`` (int64 counts) instead. Its safetensors metadata carries ``format``, ``step``,
``rank`` and ``crc32``: a JSON map from tensor name to the CRC-32 of the tensor's bytes (captures written
before checksums existed have none and are read unverified).

What the store promises (the cases tried are in ``RELIABILITY.md``):

- **One writer per rank.** A writer holds an exclusive ``flock`` on ``.lock.rank<r>`` for its life;
  a second writer of the same rank fails at once with :class:`CaptureBusyError`. The kernel drops the
  lock when a writer dies, so a killed run never blocks the next one.
- **Atomic, durable files.** Every file is written to ``.<name>.tmp-<pid>`` in the same directory,
  flushed with ``fsync`` (step files when ``durable=True``, manifests always), renamed into place
  (``os.replace`` is atomic on POSIX) and the directory entry synced. A process killed at any moment
  leaves each completed step readable; a failed write (e.g. ENOSPC) removes its temp file and raises
  :class:`CaptureWriteError`. Every file gets mode ``0o666 & ~umask``.
- **Only the capture's own regular files are read.** A symbolic link (step file, manifest, indices,
  ``steps/``), a FIFO, a device or a directory where a file should be is refused with a
  :class:`CaptureFileError` naming it; nothing is opened that could block or lead outside the directory.
- **Validated content.** Manifests are checked field by field (one error naming file and field); a
  step's tensors must have the dtype and shape the manifest gives, sampled indices must be sorted and
  in range; ``Capture.check()`` verifies every checksum, ``get(..., verify=True)`` one tensor's.
- **Damage is reported, never skipped.** ``Capture.damaged`` lists every unreadable file with the
  reason, ``Capture.status`` is ``"damaged"`` then, and reading a damaged step raises.

Reading is lazy: ``safetensors.safe_open`` memory-maps a step file and copies out only the tensor
asked for; nothing loads the whole capture.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import re
import stat
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open

from captures.summary import MOMENT_FIELDS, histogram_edges

try:  # POSIX; without it (Windows) writers are not exclusive
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

FORMAT = "gradstats-capture"
FORMAT_VERSION = 1
KINDS = ("grad", "update")
#: capture statuses: as written by the writer, then the two a reader derives
STATUSES = ("recording", "complete", "aborted", "interrupted", "damaged")

_STEP_FILE = re.compile(r"^(\d+)\.rank(\d+)\.safetensors$")
_TEMP_FILE = re.compile(r"^\.(.+)\.tmp-\d+$")
_RANK_IN_NAME = re.compile(r"(?:^|\.)rank(\d+)\.")
_MAX_MANIFEST_BYTES = 64 << 20
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

#: torch dtype name -> safetensors header dtype code
_ST_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}


class CaptureFileError(ValueError):
    """A file of a capture is missing, truncated, corrupted or not part of a gradstats capture."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class CaptureBusyError(ValueError):
    """Another live writer holds this rank of the capture directory."""


class CaptureWriteError(OSError):
    """Writing a capture file failed (disk full, permissions, ...); its temp file was removed."""

    def __init__(self, path: str | os.PathLike, cause: OSError) -> None:
        self.path = str(path)
        super().__init__(cause.errno, f"{self.path}: cannot write ({cause.strerror or cause}); "
                                      "the steps written before stay readable")


@dataclass(frozen=True)
class CaptureRecord:
    """One recorded tensor: ``layer``'s values (``kind`` grad/update) at optimizer ``step`` on ``rank``."""

    step: int
    layer: str
    rank: int
    kind: str
    values: np.ndarray | torch.Tensor


@dataclass(frozen=True)
class LayerSpec:
    """What is stored for one parameter: the stored (local) shape, dtypes, sampled indices, shard.

    ``shard`` describes a parameter of which this rank holds a piece (a DTensor under FSDP2):
    ``{"global_shape", "local_shape", "global_offset", "placements", "mesh_shape"}``; ``shape`` is then
    the local shape.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    stored_dtype: str
    indices: np.ndarray | None = None
    shard: Mapping[str, Any] | None = None

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def stored_numel(self) -> int:
        return self.numel if self.indices is None else len(self.indices)

    @property
    def global_shape(self) -> tuple[int, ...]:
        return tuple(self.shard["global_shape"]) if self.shard else self.shape


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _torch_dtype(name: str) -> torch.dtype:
    dt = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"unknown torch dtype {name!r}")
    return dt


def step_file_name(step: int, rank: int) -> str:
    """File name (inside ``steps/``) of the record of ``step`` on ``rank``."""
    return f"{step:09d}.rank{rank}.safetensors"


def tensor_crc32(t: torch.Tensor) -> int:
    """CRC-32 (zlib) of the bytes of a CPU tensor, in its memory order (C-contiguous)."""
    t = t.detach().contiguous().reshape(-1)
    if t.numel() == 0:
        return 0
    return zlib.crc32(t.view(torch.uint8).numpy())


# ------------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------------

_umask_lock = threading.Lock()
_umask_value: int | None = None


def file_mode() -> int:
    """The mode of every file a capture writes: ``0o666 & ~umask`` (what ``open()`` would give)."""
    global _umask_value
    with _umask_lock:
        if _umask_value is None:
            try:  # reading it leaves the process umask alone (Linux)
                with open("/proc/self/status") as f:
                    _umask_value = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
            except (OSError, StopIteration, ValueError):
                _umask_value = os.umask(0o022)
                os.umask(_umask_value)
    return 0o666 & ~_umask_value


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Callable[[Path], None], durable: bool) -> None:
    """Write ``path`` via a temp file in its directory: create exclusively, write, fsync, rename.

    Any failure removes the temp file; an ``OSError`` becomes a :class:`CaptureWriteError` naming
    ``path``. The temp name carries the pid so that a killed writer's leftovers can be told apart.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        try:  # exclusive and not through a link: nobody else's file is truncated
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o666)
        except FileExistsError:  # a leftover of this pid (a failed write): it is ours
            tmp.unlink()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o666)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, file_mode())  # whatever wrote it: every capture file gets one mode
        if durable:
            _fsync_path(tmp)
        os.replace(tmp, path)
        if durable:
            _fsync_path(path.parent, directory=True)
    except BaseException as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(e, OSError) and not isinstance(e, CaptureWriteError):
            raise CaptureWriteError(path, e) from e
        raise


def _write_safetensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
    """Write CPU ``tensors`` to ``path`` in the safetensors format, streaming each tensor's bytes.

    The format: an 8-byte little-endian header length, a JSON header (``{name: {dtype, shape,
    data_offsets}}`` plus ``__metadata__``) padded with spaces to a multiple of 8, then the tensors'
    bytes back to back. Written here rather than by ``safetensors.torch.save_file``, which goes through
    its own randomly named temp file (left behind when the process is killed, and made 0600) and so
    escapes this store's temp-file and mode rules; nothing is copied into one big buffer either.
    """
    header: dict[str, Any] = {"__metadata__": dict(metadata)}
    views, offset = [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        dt = _ST_DTYPES.get(_dtype_name(t.dtype))
        if dt is None or t.device.type != "cpu":
            raise ValueError(f"tensor {name!r}: cannot store a {t.dtype} tensor on {t.device}")
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
        views.append(t.reshape(-1).view(torch.uint8).numpy() if nbytes else None)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for v in views:
            if v is not None:
                f.write(memoryview(v))


def _atomic_save_tensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str],
                         durable: bool = True) -> None:
    tensors = dict(tensors)
    metadata = dict(metadata)
    metadata["crc32"] = json.dumps({k: tensor_crc32(t) for k, t in tensors.items()}, sort_keys=True)
    _atomic_write(path, lambda tmp: _write_safetensors(tmp, tensors, metadata), durable)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic, torch.Tensor)) and np.size(value) == 1:
        return value.item()
    if isinstance(value, (np.ndarray, tuple, set)):
        return list(np.asarray(value).tolist()) if isinstance(value, np.ndarray) else list(value)
    if isinstance(value, (torch.dtype, torch.device, Path)):
        return str(value)
    raise TypeError(f"manifest value of type {type(value).__name__} is not JSON serialisable: {value!r}")


def _lock_path(directory: Path, rank: int) -> Path:
    return directory / f".lock.rank{rank}"


def _acquire_lock(directory: Path, rank: int) -> int | None:
    """Take the exclusive writer lock of ``rank`` (an ``flock`` on ``.lock.rank<r>``); its fd.

    The file is re-checked after locking: a writer that finished may have unlinked it in between, and
    a lock on an unlinked inode would exclude nobody.
    """
    if fcntl is None:  # pragma: no cover
        return None
    path = _lock_path(directory, rank)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o666)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise CaptureFileError(path, "is a symbolic link; refusing it as the writer lock") from e
            raise CaptureWriteError(path, e) from e
        # A reader probing the lock (Capture.status, check(repair=True)) holds it shared for a few
        # microseconds: retry briefly before calling the rank busy.
        for attempt in range(20):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if attempt < 19:
                    time.sleep(0.005)
        else:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise CaptureBusyError(
                f"{directory}: rank {rank} is being written by another recorder (pid {holder}); "
                "wait for it to finish or choose another directory") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.lstat(path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)


def _release_lock(directory: Path, rank: int, fd: int | None) -> None:
    if fd is None:
        return
    try:
        _lock_path(directory, rank).unlink()
    except OSError:
        pass
    os.close(fd)  # closing drops the flock


def _lock_is_free(directory: Path, rank: int) -> bool:
    """Whether no live writer holds rank ``rank`` (no lock file, or one nobody has locked)."""
    if fcntl is None:  # pragma: no cover
        return True
    path = _lock_path(directory, rank)
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _temp_rank(name: str) -> int | None:
    """The rank a temp file's target belongs to (``manifest.json`` is rank 0's); None if not ours."""
    m = _TEMP_FILE.match(name)
    if not m:
        return None
    target = m.group(1)
    if target == "manifest.json":
        return 0
    r = _RANK_IN_NAME.search(target)
    return int(r.group(1)) if r else None


def _stale_temp_files(directory: Path, rank: int | None = None) -> list[Path]:
    """Temp files of writers of ``rank`` (any rank when None) under ``directory`` and ``steps/``."""
    found = []
    for d in (directory, directory / "steps"):
        if not d.is_dir() or d.is_symlink():
            continue
        for entry in os.scandir(d):
            r = _temp_rank(entry.name)
            if r is not None and (rank is None or r == rank):
                found.append(Path(entry.path))
    return found


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
            own_manifest = self.dir / f"manifest.rank{self.rank}.json"
            if own_manifest.exists() or any(steps.glob(f"*.rank{self.rank}.safetensors")):
                if not overwrite:
                    raise ValueError(f"{self.dir} already holds a capture for rank {self.rank}; "
                                     "choose a new directory or pass overwrite=True")
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
                _atomic_save_tensors(self.dir / f"indices.rank{self.rank}.safetensors", sampled,
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
        for p in (self.dir / "steps").glob(f"*.rank{r}.safetensors"):
            p.unlink()
        for p in (self.dir / f"manifest.rank{r}.json", self.dir / f"indices.rank{r}.safetensors"):
            p.unlink(missing_ok=True)
        if r == 0:
            (self.dir / "manifest.json").unlink(missing_ok=True)
        for p in _stale_temp_files(self.dir, r):  # we hold rank r's lock: their writers are dead
            p.unlink(missing_ok=True)

    def _write_manifest(self) -> None:
        data = (json.dumps(self.manifest, indent=1, default=_json_default) + "\n").encode()
        _atomic_write(self.dir / f"manifest.rank{self.rank}.json", lambda t: _write_bytes(t, data), True)
        if self.rank == 0:
            _atomic_write(self.dir / "manifest.json", lambda t: _write_bytes(t, data), True)

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


# ------------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------------

def _regular_file(path: Path) -> os.stat_result:
    """``lstat`` of ``path``, refusing anything but a regular file (link, FIFO, device, directory)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError as e:
        raise CaptureFileError(path, "file is missing") from e
    except OSError as e:
        raise CaptureFileError(path, f"cannot stat ({e.strerror})") from e
    if stat.S_ISLNK(st.st_mode):
        target = os.path.realpath(path)
        raise CaptureFileError(path, f"is a symbolic link (to {target}); a capture reads only its own "
                                     "regular files")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a directory" if stat.S_ISDIR(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device or special file")
        raise CaptureFileError(path, f"is {kind}, not a regular file; refusing to read it")
    return st


def _read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file, opened without following links and without blocking."""
    _regular_file(path)
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC)
    except OSError as e:
        raise CaptureFileError(path, f"cannot open ({e.strerror})") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped between the lstat and the open
            raise CaptureFileError(path, "is not a regular file; refusing to read it")
        if st.st_size > limit:
            raise CaptureFileError(path, f"is {st.st_size} bytes; a manifest is at most {limit}")
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _shape_ok(v: Any) -> bool:
    return isinstance(v, list) and len(v) <= 64 and all(_is_int(s) and s >= 0 for s in v)


def validate_manifest(path: str | os.PathLike, m: Any) -> dict[str, Any]:
    """Check a parsed manifest field by field; the first problem is one :class:`CaptureFileError`."""
    def bad(field: str, problem: str) -> CaptureFileError:
        return CaptureFileError(path, f"manifest field {field!r} {problem}")

    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise CaptureFileError(path, f"not a {FORMAT} manifest (no 'format': '{FORMAT}' field)")
    version = m.get("format_version")
    if not _is_int(version) or version < 1:
        raise bad("format_version", f"must be an integer in 1..{FORMAT_VERSION}, got {version!r}")
    if version > FORMAT_VERSION:
        raise CaptureFileError(path, f"written by a newer gradstats (format_version {version} > "
                                     f"{FORMAT_VERSION})")
    layers = m.get("layers")
    if not isinstance(layers, list) or not layers or not all(isinstance(x, str) for x in layers):
        raise bad("layers", f"must be a non-empty list of layer names, got {_short(layers)}")
    if len(set(layers)) != len(layers):
        raise bad("layers", "lists a layer twice")
    kinds = m.get("kinds")
    if not isinstance(kinds, list) or not kinds or any(k not in KINDS for k in kinds) \
            or len(set(kinds)) != len(kinds):
        raise bad("kinds", f"must be a non-empty list of distinct kinds from {KINDS}, got {_short(kinds)}")

    def per_layer(field: str, ok: Callable[[Any], bool], what: str, required: bool = False) -> None:
        d = m.get(field)
        if d is None and not required:
            return
        if not isinstance(d, dict):
            raise bad(field, f"must be a map from layer name to {what}, got {_short(d)}")
        for layer in layers:
            if layer not in d:
                raise bad(field, f"has no entry for layer {layer!r}")
            if not ok(d[layer]):
                raise bad(field, f"entry for layer {layer!r} must be {what}, got {_short(d[layer])}")

    def dtype_ok(v: Any) -> bool:
        return isinstance(v, str) and v in _ST_DTYPES

    per_layer("shapes", _shape_ok, "a list of non-negative integers", required=True)
    per_layer("dtypes", dtype_ok, f"a dtype name from {sorted(_ST_DTYPES)}")
    per_layer("stored_dtypes", dtype_ok, f"a dtype name from {sorted(_ST_DTYPES)}")
    per_layer("stored_numel", lambda v: _is_int(v) and v >= 0, "a non-negative integer")
    per_layer("sampled", lambda v: isinstance(v, bool), "true or false")
    for field, ok, what in (
        ("summary_only", lambda v: isinstance(v, bool), "true or false"),
        ("hist_bins", lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
        ("world_size", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
        ("rank", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
        ("every", lambda v: v is None or (_is_int(v) and v >= 1), "null or an integer >= 1"),
        ("status", lambda v: v in STATUSES[:3], f"one of {STATUSES[:3]}"),
        ("extra", lambda v: isinstance(v, dict), "an object"),
        ("model", lambda v: isinstance(v, str), "a string"),
    ):
        if field in m and not ok(m[field]):
            raise bad(field, f"must be {what}, got {_short(m[field])}")
    if _is_int(m.get("rank")) and _is_int(m.get("world_size")) and m["rank"] >= m["world_size"]:
        raise bad("rank", f"is {m['rank']} but world_size is {m['world_size']}")
    aliases = m.get("aliases", {})
    if not isinstance(aliases, dict) or not all(
            isinstance(a, str) and a not in layers and t in layers for a, t in aliases.items()):
        raise bad("aliases", f"must map other names to recorded layers, got {_short(aliases)}")
    shards = m.get("shards", {})
    if not isinstance(shards, dict):
        raise bad("shards", f"must be a map from layer name to a shard, got {_short(shards)}")
    for layer, sh in shards.items():
        if layer not in layers or not isinstance(sh, dict):
            raise bad("shards", f"entry {layer!r} is not a recorded layer's shard")
        for key in ("global_shape", "local_shape", "global_offset"):
            if not _shape_ok(sh.get(key)):
                raise bad("shards", f"entry {layer!r} has no valid {key!r}")
        g, loc, off = sh["global_shape"], sh["local_shape"], sh["global_offset"]
        if not len(g) == len(loc) == len(off) or any(o + n > s for o, n, s in zip(off, loc, g, strict=True)):
            raise bad("shards", f"entry {layer!r}: the local piece {loc} at {off} lies outside {g}")
        if g != m["shapes"][layer]:
            raise bad("shards", f"entry {layer!r}: global_shape {g} differs from shapes {m['shapes'][layer]}")
    return m


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_json(path: Path) -> dict[str, Any]:
    data = _read_regular(path, _MAX_MANIFEST_BYTES)
    try:
        parsed = json.loads(data.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CaptureFileError(path, f"unreadable manifest ({e})") from e
    except RecursionError as e:
        raise CaptureFileError(path, "unreadable manifest (nested too deeply)") from e
    return validate_manifest(path, parsed)


@dataclass(frozen=True)
class _Expected:
    """What a rank's step file must hold for one tensor name: dtype name and shape."""

    dtype: str
    shape: tuple[int, ...]


class _StepFile:
    """An open step file; validates on entry that it is a complete gradstats capture file whose
    tensors have the dtypes and shapes in ``expected`` (tensor name -> :class:`_Expected`)."""

    def __init__(self, path: Path, step: int | None = None, rank: int | None = None,
                 expected: Mapping[str, _Expected] | None = None) -> None:
        self.path = path
        self.step = step
        self.rank = rank
        self.expected = expected
        self._cm: Any = None

    def __enter__(self) -> _StepFile:
        _regular_file(self.path)
        # Open without following links or blocking, check the open file is regular, and let safetensors
        # map that same open file (through /proc on Linux): a FIFO or link swapped in after the check
        # above is never what gets read.
        try:
            fd = os.open(self.path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC)
        except OSError as e:
            raise CaptureFileError(self.path, f"cannot open ({e.strerror})") from e
        size = 0
        try:
            st = os.fstat(fd)
            size = st.st_size
            if not stat.S_ISREG(st.st_mode):
                raise CaptureFileError(self.path, "is not a regular file; refusing to read it")
            proc = f"/proc/self/fd/{fd}"
            target = proc if os.path.exists(proc) else str(self.path)
            self._cm = safe_open(target, framework="pt")
            self.handle = self._cm.__enter__()
        except FileNotFoundError as e:
            raise CaptureFileError(self.path, "file is missing") from e
        except CaptureFileError:
            raise
        except Exception as e:  # safetensors raises its own error type for every header problem
            raise CaptureFileError(self.path, f"not a readable safetensors file ({size} bytes; "
                                              f"truncated or corrupted?): {_one_line(e)}") from e
        finally:
            os.close(fd)  # safetensors holds its own descriptor / mapping
        try:
            self._validate()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _validate(self) -> None:
        meta = self.handle.metadata() or {}
        if meta.get("format") != FORMAT:
            raise CaptureFileError(self.path, f"a safetensors file, but not one written by {FORMAT} "
                                              f"(metadata {_short(meta)})")
        if (self.step is not None and meta.get("step") != str(self.step)) or (
                self.rank is not None and meta.get("rank") != str(self.rank)):
            raise CaptureFileError(self.path, f"records step {meta.get('step')} rank {meta.get('rank')}, "
                                              f"but its name says step {self.step} rank {self.rank}")
        self.crc: dict[str, int] = {}
        if "crc32" in meta:
            try:
                crc = json.loads(meta["crc32"])
                self.crc = {str(k): int(v) for k, v in crc.items()}
            except (ValueError, TypeError, AttributeError) as e:
                raise CaptureFileError(self.path, f"unreadable checksum metadata ({e})") from e
        if self.expected is None:
            return
        for key in self.handle.keys():
            want = self.expected.get(key)
            if want is None:
                raise CaptureFileError(self.path, f"holds tensor {key!r}, which the manifest does not list")
            sl = self.handle.get_slice(key)
            dtype, shape = sl.get_dtype(), tuple(sl.get_shape())
            if dtype != _ST_DTYPES.get(want.dtype) or shape != want.shape:
                raise CaptureFileError(self.path, f"tensor {key!r} is {dtype} {list(shape)}; the manifest "
                                                  f"says {want.dtype} {list(want.shape)}")
            if self.crc and key not in self.crc:
                raise CaptureFileError(self.path, f"tensor {key!r} has no checksum")

    def __exit__(self, *exc: Any) -> None:
        if self._cm is not None:
            self._cm.__exit__(*exc)
            self._cm = None

    def keys(self) -> list[str]:
        return list(self.handle.keys())

    def get(self, key: str, verify: bool = False) -> torch.Tensor:
        try:
            t = self.handle.get_tensor(key)
        except Exception as e:
            raise CaptureFileError(self.path, f"cannot read tensor {key!r}: {e}") from e
        if verify and key in self.crc and tensor_crc32(t) != self.crc[key]:
            raise CaptureFileError(self.path, f"tensor {key!r} fails its checksum (crc32 "
                                              f"{tensor_crc32(t):08x} != {self.crc[key]:08x}): corrupted")
        return t

    def verify_all(self) -> None:
        """Read every tensor and compare its CRC-32 with the one written (no-op without checksums)."""
        for key in self.handle.keys():
            self.get(key, verify=True)


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds every bfloat16 value exactly
        t = t.to(torch.float32)
    return t.numpy()


def _rank_of_manifest(p: Path) -> int:
    m = re.fullmatch(r"manifest\.rank(\d+)\.json", p.name)
    return int(m.group(1)) if m else -1


class Capture:
    """A capture directory opened for reading (see :func:`open_capture`).

    ``verify=True`` checks each tensor's CRC-32 as it is read (``Capture.check()`` always does).
    """

    def __init__(self, path: str | os.PathLike, verify: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"no capture directory at {self.path}")
        self.verify = bool(verify)
        self._damage: dict[str, str] = {}
        self._scanned = False
        rank_paths = sorted((Path(e.path) for e in os.scandir(self.path)
                             if _rank_of_manifest(Path(e.name)) >= 0), key=_rank_of_manifest)
        main = self.path / "manifest.json"
        if os.path.lexists(main):
            self.manifest = _read_json(main)
        elif rank_paths:
            self.manifest = _read_json(rank_paths[0])
        else:
            raise ValueError(f"{self.path} is not a capture: it has no manifest.json")
        m = self.manifest
        #: every rank's own manifest that could be read (rank -> manifest)
        self.rank_manifests: dict[int, dict[str, Any]] = {}
        for p in rank_paths:
            try:
                rm = _read_json(p)
                if rm["layers"] != m["layers"] or rm["kinds"] != m["kinds"]:
                    raise CaptureFileError(p, "describes other layers or kinds than the capture's "
                                              "manifest (a file of another run?)")
                self.rank_manifests[_rank_of_manifest(p)] = rm
            except CaptureFileError as e:
                self._damage[str(p)] = e.problem
        self.layers: list[str] = list(m["layers"])
        self.shapes: dict[str, tuple[int, ...]] = {k: tuple(m["shapes"][k]) for k in self.layers}
        self.kinds: list[str] = list(m["kinds"])
        #: other names of recorded parameters (tied weights): alias -> recorded layer name
        self.aliases: dict[str, str] = dict(m.get("aliases", {}))
        self.summary_only: bool = bool(m.get("summary_only", False))
        self._files: dict[tuple[int, int], Path] = {}
        steps_dir = self.path / "steps"
        if os.path.lexists(steps_dir):
            st = os.lstat(steps_dir)
            if stat.S_ISLNK(st.st_mode):
                raise CaptureFileError(steps_dir, f"is a symbolic link (to {os.path.realpath(steps_dir)}); "
                                                  "a capture reads only its own steps/ directory")
            if not stat.S_ISDIR(st.st_mode):
                raise CaptureFileError(steps_dir, "is not a directory")
            for entry in os.scandir(steps_dir):
                match = _STEP_FILE.match(entry.name)
                if match:  # links and FIFOs are listed too: reading them raises, check() reports them
                    self._files[(int(match.group(1)), int(match.group(2)))] = Path(entry.path)
        self.steps: list[int] = sorted({s for s, _ in self._files})
        self.ranks: list[int] = sorted({r for _, r in self._files})
        self._indices: dict[int, dict[str, np.ndarray]] = {}
        self._expected: dict[int, dict[str, _Expected]] = {}

    def __repr__(self) -> str:
        return (f"Capture({str(self.path)!r}, model={self.manifest.get('model')!r}, "
                f"layers={len(self.layers)}, "
                f"steps={len(self.steps)}, ranks={self.ranks}, kinds={self.kinds})")

    # --- what each rank's files must hold -------------------------------------------------------
    def _manifest_of(self, rank: int) -> dict[str, Any]:
        return self.rank_manifests.get(rank, self.manifest)

    def shard(self, layer: str, rank: int = 0) -> dict[str, Any] | None:
        """Where ``rank``'s piece of ``layer`` sits in the full parameter (FSDP2 / DTensor); None if whole.

        ``{"global_shape", "local_shape", "global_offset", "placements", "mesh_shape"}``.
        """
        layer = self._check_layer(layer)
        sh = self._manifest_of(rank).get("shards", {}).get(layer)
        return None if sh is None else dict(sh)

    def _stored_shape(self, layer: str, rank: int) -> tuple[int, ...]:
        m = self._manifest_of(rank)
        if m.get("sampled", {}).get(layer, False):
            return (int(m["stored_numel"][layer]),)
        sh = m.get("shards", {}).get(layer)
        return tuple(sh["local_shape"]) if sh else self.shapes[layer]

    def _expect(self, rank: int) -> dict[str, _Expected]:
        if rank not in self._expected:
            m = self._manifest_of(rank)
            out: dict[str, _Expected] = {}
            for layer in self.layers:
                for kind in self.kinds:
                    if self.summary_only:
                        out[f"moments/{kind}/{layer}"] = _Expected("float64", (len(MOMENT_FIELDS),))
                        out[f"hist/{kind}/{layer}"] = _Expected("int64", (int(m.get("hist_bins", 0)),))
                    else:
                        dt = m.get("stored_dtypes", {}).get(layer, "float32")
                        out[f"{kind}/{layer}"] = _Expected(dt, self._stored_shape(layer, rank))
            self._expected[rank] = out
        return self._expected[rank]

    def _open_step(self, step: int, rank: int) -> _StepFile:
        return _StepFile(self._file(step, rank), step, rank, self._expect(rank))

    def _damaged_here(self, e: CaptureFileError) -> CaptureFileError:
        self._damage[e.path] = e.problem
        return e

    # --- single values --------------------------------------------------------------------------
    def _check_layer(self, layer: str) -> str:
        """The recorded name of ``layer`` (an alias resolves to the layer it names)."""
        layer = self.aliases.get(layer, layer)
        if layer not in self.shapes:
            raise ValueError(f"unknown layer {layer!r}; the capture has {len(self.layers)} layers, "
                             f"e.g. {self.layers[:5]}")
        return layer

    def _check_kind(self, kind: str) -> None:
        if kind not in self.kinds:
            raise ValueError(f"kind {kind!r} was not recorded; this capture has {self.kinds}")

    def _file(self, step: int, rank: int) -> Path:
        try:
            return self._files[(step, rank)]
        except KeyError:
            if rank not in self.ranks:
                raise ValueError(f"no records of rank {rank}; the capture has ranks {self.ranks}") from None
            have = sorted(s for s, r in self._files if r == rank)
            raise ValueError(f"no record of step {step} on rank {rank}; recorded steps: "
                             f"{have[:10]}{' ...' if len(have) > 10 else ''}") from None

    def indices(self, layer: str, rank: int = 0) -> np.ndarray | None:
        """Sampled flat indices (int64, sorted) of ``layer``, fixed for the capture; None when full.

        Checked on load: strictly increasing, in range of the (local) tensor, checksum intact.
        """
        layer = self._check_layer(layer)
        m = self._manifest_of(rank)
        if not m.get("sampled", {}).get(layer, False):
            return None
        if rank not in self._indices:
            path = self.path / f"indices.rank{rank}.safetensors"
            if not os.path.lexists(path):
                found = sorted(self.path.glob("indices.rank*.safetensors"))
                if not found:
                    raise self._damaged_here(
                        CaptureFileError(path, "the capture is sampled but its indices file is missing"))
                path = found[0]
            self._indices[rank] = self._load_indices(path, rank)
        return self._indices[rank][layer]

    def _load_indices(self, path: Path, rank: int) -> dict[str, np.ndarray]:
        m = self._manifest_of(rank)
        sampled = [la for la in self.layers if m.get("sampled", {}).get(la, False)]
        expected = {la: _Expected("int64", (int(m["stored_numel"][la]),)) for la in sampled}
        try:
            with _StepFile(path, None, None, expected) as f:
                out = {}
                for layer in sampled:
                    if layer not in f.keys():
                        raise CaptureFileError(path, f"has no indices for sampled layer {layer!r}")
                    idx = f.get(layer, verify=True).numpy()
                    sh = m.get("shards", {}).get(layer)
                    numel = int(np.prod(sh["local_shape"] if sh else self.shapes[layer], dtype=np.int64))
                    if len(idx) and (idx[0] < 0 or idx[-1] >= numel or np.any(np.diff(idx) <= 0)):
                        raise CaptureFileError(
                            path, f"indices of layer {layer!r} are not strictly increasing in [0, {numel}) "
                                  f"(min {idx.min()}, max {idx.max()})")
                    out[layer] = idx
                return out
        except CaptureFileError as e:
            raise self._damaged_here(e) from None

    def get(self, layer: str, step: int, rank: int = 0, kind: str = "grad",
            as_torch: bool = False, verify: bool | None = None) -> np.ndarray | torch.Tensor:
        """The recorded values of ``layer`` at ``step`` on ``rank``: full (local) shape, or 1-D when sampled.

        Returned in the stored dtype (as numpy, bfloat16 becomes float32; ``as_torch=True`` keeps it).
        ``verify`` (default: the capture's) checks the tensor's CRC-32.
        """
        layer = self._check_layer(layer)
        self._check_kind(kind)
        if self.summary_only:
            raise ValueError("this is a summary-only capture: it stores no tensors; use .moments()")
        verify = self.verify if verify is None else verify
        path = self._file(step, rank)
        try:
            with self._open_step(step, rank) as f:
                key = f"{kind}/{layer}"
                if key not in f.handle.keys():
                    raise ValueError(f"{path}: no {kind!r} record of layer {layer!r} at step {step} "
                                     "(the parameter had no gradient that step)")
                t = f.get(key, verify=verify)
        except CaptureFileError as e:
            raise self._damaged_here(e) from None
        return t if as_torch else _to_numpy(t)

    def get_full(self, layer: str, step: int, kind: str = "grad", as_torch: bool = False,
                 verify: bool | None = None) -> np.ndarray | torch.Tensor:
        """The whole parameter's values at ``step``, put together from every rank's shard (FSDP2).

        A layer that is not sharded is returned as recorded on the lowest rank. Needs full (unsampled)
        tensors; a piece of the parameter no rank recorded is an error.
        """
        layer = self._check_layer(layer)
        holders = [r for r in self.ranks if self.shard(layer, r) is not None]
        if not holders:
            return self.get(layer, step, rank=self.ranks[0] if self.ranks else 0, kind=kind,
                            as_torch=as_torch, verify=verify)
        if any(self._manifest_of(r).get("sampled", {}).get(layer, False) for r in holders):
            raise ValueError(f"layer {layer!r} was sampled: its shards cannot be put together")
        out: torch.Tensor | None = None
        covered = torch.zeros(self.shapes[layer], dtype=torch.bool)
        for r in holders:
            sh = self.shard(layer, r)
            piece = self.get(layer, step, rank=r, kind=kind, as_torch=True, verify=verify)
            if out is None:
                out = torch.zeros(self.shapes[layer], dtype=piece.dtype)
            where = tuple(slice(o, o + n)
                          for o, n in zip(sh["global_offset"], sh["local_shape"], strict=True))
            out[where] = piece
            covered[where] = True
        assert out is not None
        if not bool(covered.all()):
            raise ValueError(f"layer {layer!r} at step {step}: ranks {holders} cover "
                             f"{int(covered.sum())} of {covered.numel()} entries; a rank's shard is missing")
        return out if as_torch else _to_numpy(out)

    # --- iteration ------------------------------------------------------------------------------
    def records(
        self,
        kind: str = "grad",
        ranks: Sequence[int] | None = None,
        layers: Sequence[str] | None = None,
        steps: Sequence[int] | None = None,
        as_torch: bool = False,
        verify: bool | None = None,
    ) -> Iterator[CaptureRecord]:
        """Lazily yield :class:`CaptureRecord` by step, then rank, then layer (model order).

        A damaged step file raises :class:`CaptureFileError` when it is reached (never skipped).
        """
        self._check_kind(kind)
        if self.summary_only:
            raise ValueError("this is a summary-only capture: it stores no tensors; use .moments()")
        verify = self.verify if verify is None else verify
        layer_list = self.layers if layers is None else [self._check_layer(la) for la in layers]
        rank_list = self.ranks if ranks is None else list(ranks)
        unknown = [r for r in rank_list if r not in self.ranks]
        if unknown:
            raise ValueError(f"no records of rank(s) {unknown}; the capture has ranks {self.ranks}")
        step_list = self.steps if steps is None else sorted(steps)
        for step in step_list:
            for rank in rank_list:
                if (step, rank) not in self._files:
                    if steps is not None:
                        self._file(step, rank)  # raises the clear error for an explicit request
                    continue
                try:
                    with self._open_step(step, rank) as f:
                        present = set(f.keys())
                        values = [(layer, f.get(f"{kind}/{layer}", verify=verify)) for layer in layer_list
                                  if f"{kind}/{layer}" in present]
                except CaptureFileError as e:
                    raise self._damaged_here(e) from None
                for layer, t in values:
                    yield CaptureRecord(step, layer, rank, kind, t if as_torch else _to_numpy(t))

    def __iter__(self) -> Iterator[tuple[int, str, np.ndarray]]:
        """``for step, layer, values in capture``: rank 0 (or the lowest rank), kind "grad", lazily."""
        if not self.ranks:
            return
        rank = 0 if 0 in self.ranks else self.ranks[0]
        for rec in self.records(kind="grad", ranks=[rank]):
            yield rec.step, rec.layer, rec.values

    # --- integrity ------------------------------------------------------------------------------
    @property
    def damaged(self) -> list[tuple[str, str]]:
        """Every damaged file as ``(path, reason)``: the headers of all files are checked once (cheap,
        no tensor data is read), plus whatever a read has found since. ``check()`` also verifies data."""
        if not self._scanned:
            self._scan(verify=False)
        return sorted(self._damage.items())

    def _scan(self, verify: bool) -> list[dict[str, Any]]:
        rows = []
        for r, m in sorted(self.rank_manifests.items()):
            if any(m.get("sampled", {}).values()):
                path = self.path / f"indices.rank{r}.safetensors"
                ok, problem = True, ""
                if not os.path.lexists(path):
                    if any(self.path.glob("indices.rank*.safetensors")):
                        continue  # an old capture whose ranks share one indices file
                    ok, problem = False, "the capture is sampled but its indices file is missing"
                    self._damage[str(path)] = problem
                else:
                    try:
                        self._indices[r] = self._load_indices(path, r)
                    except CaptureFileError as e:
                        ok, problem = False, e.problem
                rows.append(self._row(-1, r, path, ok, problem, "indices"))
        for (step, rank), path in sorted(self._files.items()):
            ok, problem = True, ""
            try:
                with self._open_step(step, rank) as f:
                    if verify:
                        f.verify_all()
            except CaptureFileError as e:
                self._damage[e.path] = e.problem
                ok, problem = False, e.problem
            rows.append(self._row(step, rank, path, ok, problem, "step"))
        self._scanned = True
        return rows

    @staticmethod
    def _row(step: int, rank: int, path: Path, ok: bool, problem: str, role: str) -> dict[str, Any]:
        try:
            size = os.lstat(path).st_size
        except OSError:
            size = 0
        return {"step": step, "rank": rank, "file": str(path), "role": role, "bytes": size,
                "ok": ok, "problem": problem}

    def check(self, verify: bool = True, repair: bool = False) -> pd.DataFrame:
        """Check every file: one row per file with ``step, rank, file, role, bytes, ok, problem``.

        ``role`` is ``step``, ``indices``, ``manifest`` (only rows for damaged rank manifests) or
        ``temp``; ``step`` is -1 for non-step files. ``verify`` reads every tensor and compares its
        CRC-32. ``repair=True`` removes temp files whose writer is dead (no live lock on their rank);
        the rows of temp files say what was done. ``bool(table["ok"].all())`` is the verdict, and
        ``table[~table.ok]`` names the damaged files (also in :attr:`damaged`).
        """
        self._damage = {p: why for p, why in self._damage.items() if _rank_of_manifest(Path(p)) >= 0
                        or Path(p).name == "manifest.json"}  # re-derive the rest from the files
        rows = [self._row(-1, _rank_of_manifest(Path(p)), Path(p), False, why, "manifest")
                for p, why in sorted(self._damage.items())]
        rows += self._scan(verify=verify)
        for tmp in sorted(_stale_temp_files(self.path)):
            r = _temp_rank(tmp.name)
            assert r is not None
            if not _lock_is_free(self.path, r):
                problem = "temp file of a live writer"
            elif repair:
                tmp.unlink(missing_ok=True)
                problem = "temp file of a dead writer: removed"
            else:
                problem = "temp file of a dead writer (check(repair=True) removes it)"
            rows.append({"step": -1, "rank": r, "file": str(tmp), "role": "temp",
                         "bytes": tmp.stat().st_size if tmp.exists() else 0, "ok": True, "problem": problem})
        return pd.DataFrame(rows, columns=["step", "rank", "file", "role", "bytes", "ok", "problem"])

    @property
    def status(self) -> str:
        """``complete``, ``recording`` (a writer is alive), ``interrupted`` (its writer died),
        ``aborted`` (the recorded block raised; see ``manifest["abort_reason"]``) or ``damaged``
        (some file is unreadable: :attr:`damaged`). The worst over all ranks."""
        if self.damaged:
            return "damaged"
        manifests = self.rank_manifests or {int(self.manifest.get("rank", 0)): self.manifest}
        statuses = {r: m.get("status", "complete") for r, m in manifests.items()}
        if "aborted" in statuses.values():
            return "aborted"
        live = [r for r, s in statuses.items() if s == "recording"]
        if live:
            return "recording" if any(not _lock_is_free(self.path, r) for r in live) else "interrupted"
        return "complete"

    # --- tables ---------------------------------------------------------------------------------
    def summary(self) -> pd.DataFrame:
        """One row per layer: shape, numel, stored entries per record, dtype, sampled, steps, bytes."""
        m = self.manifest
        n_files = len(self._files)
        rows = []
        for layer in self.layers:
            numel = int(np.prod(self.shapes[layer], dtype=np.int64))
            if self.summary_only:
                stored = len(MOMENT_FIELDS) + int(m.get("hist_bins", 0))
                dtype, itemsize = "float64+int64", 8
            else:
                stored = int(m.get("stored_numel", {}).get(layer, numel))
                dtype = m.get("stored_dtypes", {}).get(layer, "float32")
                itemsize = _torch_dtype(dtype).itemsize
            rows.append({
                "layer": layer,
                "shape": "x".join(map(str, self.shapes[layer])) or "scalar",
                "numel": numel,
                "stored": stored,
                "sampled": bool(m.get("sampled", {}).get(layer, False)),
                "dtype": dtype,
                "steps": len(self.steps),
                "bytes": stored * itemsize * len(self.kinds) * n_files,
            })
        return pd.DataFrame(rows)

    def describe(self) -> str:
        """Human-readable description (what ``gradstats inspect`` prints)."""
        m = self.manifest
        files = self.check(verify=False)
        steps = self.steps
        step_text = "none"
        if steps:
            step_text = f"{len(steps)} ({steps[0]} .. {steps[-1]}" + (
                f", every {m['every']})" if m.get("every") else ")")
        sample = m.get("sample")
        status = self.status
        reason = next((rm.get("abort_reason") for rm in [m, *self.rank_manifests.values()]
                       if rm.get("abort_reason")), None)
        lines = [
            f"capture   {self.path}",
            f"model     {m.get('model')}   device {m.get('device')}   torch {m.get('torch_version')}",
            f"status    {status}" + (f" ({reason})" if reason and status == "aborted" else "")
            + f"   created {m.get('created')}",
            f"kinds     {', '.join(self.kinds)}" + ("   (summary-only: moments + histograms)"
                                                    if self.summary_only else ""),
            f"sampling  {_sampling_text(sample)}   seed {m.get('seed')}",
            f"ranks     {self.ranks} of world size {m.get('world_size')}",
            f"steps     {step_text}",
            f"layers    {len(self.layers)}   files {int((files['role'] == 'step').sum())}   "
            f"on disk {_human_bytes(int(files['bytes'].sum()) if len(files) else 0)}",
        ]
        if self.aliases:
            lines.append("aliases   " + ", ".join(f"{a} = {t}" for a, t in self.aliases.items()))
        bad = files[~files["ok"]] if len(files) else files
        if len(bad):
            lines.append(f"UNREADABLE {len(bad)} file(s):")
            lines += [f"  {row.file}: {row.problem}" for row in bad.itertuples()]
        table = self.summary()
        table["bytes"] = table["bytes"].map(_human_bytes)
        lines += ["", table.to_string(index=False)]
        return "\n".join(lines)

    def moments(self) -> pd.DataFrame | None:
        """Summary-only records, one row per (step, layer, rank, kind); None for a capture of tensors.

        Columns ``step, layer, rank, kind`` then :data:`captures.summary.MOMENT_FIELDS`, then
        ``hist_edges`` (numpy array, ``bins + 1`` edges on [min, max]) and ``hist_counts`` (int64 array).
        """
        if not self.summary_only:
            return None
        rows = []
        for (step, rank) in sorted(self._files):
            try:
                with self._open_step(step, rank) as f:
                    present = set(f.keys())
                    tensors = {k: f.get(k, verify=self.verify) for k in present}
            except CaptureFileError as e:
                raise self._damaged_here(e) from None
            for kind in self.kinds:
                for layer in self.layers:
                    key = f"moments/{kind}/{layer}"
                    if key not in tensors:
                        continue
                    vals = tensors[key].numpy()
                    row: dict[str, Any] = {"step": step, "layer": layer, "rank": rank, "kind": kind}
                    row.update(dict(zip(MOMENT_FIELDS, vals.tolist(), strict=True)))
                    for field in ("n", "zeros", "nonfinite"):
                        row[field] = int(row[field])
                    hist = tensors.get(f"hist/{kind}/{layer}")
                    counts = hist.numpy() if hist is not None else np.zeros(0, dtype=np.int64)
                    row["hist_edges"] = histogram_edges(row["min"], row["max"], len(counts)) \
                        if len(counts) else np.zeros(0)
                    row["hist_counts"] = counts
                    rows.append(row)
        columns = ["step", "layer", "rank", "kind", *MOMENT_FIELDS, "hist_edges", "hist_counts"]
        return pd.DataFrame(rows, columns=columns)


def _sampling_text(sample: Any) -> str:
    if sample is None:
        return "full tensors"
    if isinstance(sample, bool) or not isinstance(sample, (int, float)):
        return f"sampled ({sample})"
    if isinstance(sample, float) and sample <= 1:
        return f"a fraction {sample:g} of each layer's entries"
    return f"{int(sample)} entries per layer (smaller layers in full)"


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def resolve_capture_dir(path: str | os.PathLike) -> Path:
    """The capture directory that `path` names: the path itself, or its ``capture/`` sub-directory
    when `path` is a run directory (``runs/x`` holding ``runs/x/capture``)."""
    p = Path(path)
    sub = p / "capture"
    if _has_manifest(sub) and not _has_manifest(p):
        return sub
    return p


def _has_manifest(d: Path) -> bool:
    return os.path.lexists(d / "manifest.json") or any(d.glob("manifest.rank*.json"))


def open_capture(path: str | os.PathLike, verify: bool = False) -> Capture:
    """Open the capture directory ``path`` for lazy reading (see :class:`Capture`); ``verify=True``
    checks every tensor's CRC-32 as it is read."""
    return Capture(path, verify=verify)


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
