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

The store is a package of one idea per module: :mod:`~captures.store.layout` (file names),
:mod:`~captures.store.errors`, :mod:`~captures.store.files` (safetensors I/O, CRC-32, fsync, modes, link
refusal), :mod:`~captures.store.lock` (one writer per rank), :mod:`~captures.store.manifest` (schema and
validation), :mod:`~captures.store.writer` (:class:`CaptureWriter`), :mod:`~captures.store.reader`
(:class:`Capture`), :mod:`~captures.store.check` (check and repair) and :mod:`~captures.store.from_arrays`
(:func:`write_capture`). Every name is importable from ``captures.store``.
"""

from captures.store.check import CaptureIntegrity
from captures.store.errors import CaptureBusyError, CaptureFileError, CaptureWriteError

# private names importable from here before the split (benchmarks/bench_capture.py uses one)
from captures.store.files import _atomic_save_tensors as _atomic_save_tensors
from captures.store.files import _dtype_name as _dtype_name
from captures.store.files import file_mode, tensor_crc32
from captures.store.from_arrays import write_capture
from captures.store.layout import (
    FORMAT,
    FORMAT_VERSION,
    KINDS,
    STATUSES,
    is_capture_dir,
    resolve_capture_dir,
    step_file_name,
)
from captures.store.manifest import LayerSpec, validate_manifest
from captures.store.reader import Capture, CaptureRecord, open_capture
from captures.store.writer import CaptureWriter

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "KINDS",
    "STATUSES",
    "Capture",
    "CaptureBusyError",
    "CaptureFileError",
    "CaptureIntegrity",
    "CaptureRecord",
    "CaptureWriteError",
    "CaptureWriter",
    "LayerSpec",
    "file_mode",
    "is_capture_dir",
    "open_capture",
    "resolve_capture_dir",
    "step_file_name",
    "tensor_crc32",
    "validate_manifest",
    "write_capture",
]
