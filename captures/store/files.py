"""File I/O of a capture: safetensors write and read, CRC-32, fsync, atomic rename, modes, refusing links.

Writing: a temp file in the same directory, fsync, ``os.replace``, fsync of the directory; every file
``0o666 & ~umask``. Reading: only regular files, opened without following links or blocking
(a FIFO, device or symbolic link is a :class:`~captures.store.errors.CaptureFileError`).
"""

from __future__ import annotations

import json
import os
import stat
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from captures.store.errors import CaptureFileError, CaptureWriteError, _one_line, _short
from captures.store.layout import FORMAT

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

#: torch dtype name -> safetensors header dtype code
_ST_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _torch_dtype(name: str) -> torch.dtype:
    dt = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"unknown torch dtype {name!r}")
    return dt


def tensor_crc32(t: torch.Tensor) -> int:
    """CRC-32 (zlib) of the bytes of a CPU tensor, in its memory order (C-contiguous)."""
    t = t.detach().contiguous().reshape(-1)
    if t.numel() == 0:
        return 0
    return zlib.crc32(t.view(torch.uint8).numpy())


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


def _open_regular(path: Path) -> tuple[int, os.stat_result]:
    """A descriptor of the regular file ``path``, opened without following links or blocking, and its
    ``fstat``: checked again after the open, so a FIFO or link swapped in after the ``lstat`` is refused."""
    _regular_file(path)
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC)
    except OSError as e:
        raise CaptureFileError(path, f"cannot open ({e.strerror})") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped between the lstat and the open
            raise CaptureFileError(path, "is not a regular file; refusing to read it")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file, opened without following links and without blocking."""
    fd, st = _open_regular(path)
    try:
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
        # Let safetensors map the very file opened and checked (through /proc on Linux): a FIFO or link
        # swapped in after the check is never what gets read.
        fd, st = _open_regular(self.path)
        size = st.st_size
        try:
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
