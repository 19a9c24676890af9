"""The on-disk capture: ``manifest.json`` plus one safetensors file per recorded (step, rank).

Layout of a capture directory::

    manifest.json                       rank 0's manifest (what ``Capture.manifest`` returns)
    manifest.rank<r>.json               every rank's own manifest (device, rank, status)
    indices.rank<r>.safetensors         sampled flat indices per layer (only when sampling)
    steps/<step:09d>.rank<r>.safetensors  one file per recorded optimizer step and rank

A step file holds tensors named ``"<kind>/<layer>"`` (kind ``grad`` or ``update``); a summary-only
capture holds ``"moments/<kind>/<layer>"`` (float64, fields :data:`captures.summary.MOMENT_FIELDS`) and
``"hist/<kind>/<layer>"`` (int64 counts) instead. Every file is written to a temporary name in the
same directory and renamed into place (``os.replace`` is atomic on POSIX), so a process killed at any
moment leaves each completed step readable and at worst a stray ``.tmp`` file that readers ignore.
Each rank writes only files carrying its own rank in the name, so no two ranks write the same file.

Reading is lazy: ``safetensors.safe_open`` memory-maps a step file and copies out only the tensor
asked for; nothing loads the whole capture.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from captures.summary import MOMENT_FIELDS, histogram_edges

FORMAT = "gradstats-capture"
FORMAT_VERSION = 1
KINDS = ("grad", "update")

_STEP_FILE = re.compile(r"^(\d+)\.rank(\d+)\.safetensors$")


class CaptureFileError(ValueError):
    """A file of a capture is missing, truncated, corrupted or not part of a gradstats capture."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


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
    """What is stored for one parameter: its full shape and dtype, the stored dtype, sampled indices."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    stored_dtype: str
    indices: np.ndarray | None = None

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def stored_numel(self) -> int:
        return self.numel if self.indices is None else len(self.indices)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _torch_dtype(name: str) -> torch.dtype:
    dt = getattr(torch, name, None)
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"unknown torch dtype {name!r}")
    return dt


def step_file_name(step: int, rank: int) -> str:
    """File name (inside ``steps/``) of the record of ``step`` on ``rank``."""
    return f"{step:09d}.rank{rank}.safetensors"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _atomic_save_tensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(dict(tensors), str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic, torch.Tensor)) and np.size(value) == 1:
        return value.item()
    if isinstance(value, (np.ndarray, tuple, set)):
        return list(np.asarray(value).tolist()) if isinstance(value, np.ndarray) else list(value)
    if isinstance(value, (torch.dtype, torch.device, Path)):
        return str(value)
    raise TypeError(f"manifest value of type {type(value).__name__} is not JSON serialisable: {value!r}")


class CaptureWriter:
    """Writes one rank's part of a capture directory: manifests, sampled indices, one file per step.

    ``layers`` fixes the parameters, their full shapes and the sampled indices for the whole capture.
    ``overwrite=False`` refuses a directory that already holds this rank's manifest; ``True`` first
    removes this rank's files (and, on rank 0, ``manifest.json``).
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
        sample: int | float | None = None,
        seed: int | None = 0,
        summary_only: bool = False,
        hist_bins: int = 0,
        device: str = "cpu",
        extra: Mapping[str, Any] | None = None,
        overwrite: bool = False,
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
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.dir = Path(out_dir)
        self.rank = int(rank)
        self.layers = list(layers)
        self.kinds = kinds
        self.summary_only = bool(summary_only)
        self.steps_written: list[int] = []
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "steps").mkdir(exist_ok=True)
        own_manifest = self.dir / f"manifest.rank{self.rank}.json"
        if own_manifest.exists() or any((self.dir / "steps").glob(f"*.rank{self.rank}.safetensors")):
            if not overwrite:
                raise ValueError(f"{self.dir} already holds a capture for rank {self.rank}; "
                                 "choose a new directory or pass overwrite=True")
            self._remove_own_files()
        self.manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": model,
            "layers": names,
            "shapes": {s.name: list(s.shape) for s in layers},
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
            "extra": dict(extra or {}),
        }
        sampled = {s.name: torch.from_numpy(np.asarray(s.indices, dtype=np.int64))
                   for s in layers if s.indices is not None}
        if sampled:
            _atomic_save_tensors(self.dir / f"indices.rank{self.rank}.safetensors", sampled,
                                 {"format": FORMAT, "rank": str(self.rank)})
        self._write_manifest()

    def _remove_own_files(self) -> None:
        r = self.rank
        for p in (self.dir / "steps").glob(f"*.rank{r}.safetensors"):
            p.unlink()
        for p in (self.dir / f"manifest.rank{r}.json", self.dir / f"indices.rank{r}.safetensors"):
            p.unlink(missing_ok=True)
        if r == 0:
            (self.dir / "manifest.json").unlink(missing_ok=True)

    def _write_manifest(self) -> None:
        data = (json.dumps(self.manifest, indent=1, default=_json_default) + "\n").encode()
        _atomic_write_bytes(self.dir / f"manifest.rank{self.rank}.json", data)
        if self.rank == 0:
            _atomic_write_bytes(self.dir / "manifest.json", data)

    def write_step(self, step: int, tensors: Mapping[str, torch.Tensor]) -> Path:
        """Atomically write the record of optimizer ``step``: CPU tensors named ``"<kind>/<layer>"``."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        path = self.dir / "steps" / step_file_name(step, self.rank)
        _atomic_save_tensors(path, tensors, {"format": FORMAT, "step": str(step), "rank": str(self.rank)})
        self.steps_written.append(int(step))
        return path

    def finish(self, **extra: Any) -> None:
        """Mark this rank's capture complete in its manifest; merge ``extra`` into ``manifest["extra"]``."""
        self.manifest["status"] = "complete"
        self.manifest["n_records"] = len(self.steps_written)
        self.manifest["extra"].update(extra)
        self._write_manifest()


# ------------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------------

def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CaptureFileError(path, f"unreadable manifest ({e})") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CaptureFileError(path, f"not a {FORMAT} manifest (no 'format': '{FORMAT}' field)")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise CaptureFileError(path, f"written by a newer gradstats (format_version "
                                     f"{data.get('format_version')} > {FORMAT_VERSION})")
    return data


class _StepFile:
    """An open step file; validates that it is a complete gradstats capture file on entry."""

    def __init__(self, path: Path, step: int | None = None, rank: int | None = None) -> None:
        self.path = path
        self.step = step
        self.rank = rank

    def __enter__(self) -> _StepFile:
        try:
            self._cm = safe_open(str(self.path), framework="pt")
            self.handle = self._cm.__enter__()
        except FileNotFoundError as e:
            raise CaptureFileError(self.path, "file is missing") from e
        except Exception as e:  # safetensors raises its own error type for every header problem
            size = self.path.stat().st_size if self.path.exists() else 0
            raise CaptureFileError(
                self.path, f"not a readable safetensors file ({size} bytes; truncated or corrupted?): {e}"
            ) from e
        meta = self.handle.metadata() or {}
        if meta.get("format") != FORMAT:
            self.__exit__(None, None, None)
            raise CaptureFileError(self.path, f"a safetensors file, but not one written by {FORMAT} "
                                              f"(metadata {meta})")
        if (self.step is not None and meta.get("step") != str(self.step)) or (
                self.rank is not None and meta.get("rank") != str(self.rank)):
            self.__exit__(None, None, None)
            raise CaptureFileError(self.path, f"records step {meta.get('step')} rank {meta.get('rank')}, "
                                              f"but its name says step {self.step} rank {self.rank}")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)

    def keys(self) -> list[str]:
        return list(self.handle.keys())

    def get(self, key: str) -> torch.Tensor:
        try:
            return self.handle.get_tensor(key)
        except Exception as e:
            raise CaptureFileError(self.path, f"cannot read tensor {key!r}: {e}") from e


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds every bfloat16 value exactly
        t = t.to(torch.float32)
    return t.numpy()


class Capture:
    """A capture directory opened for reading (see :func:`open_capture`)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"no capture directory at {self.path}")
        main = self.path / "manifest.json"
        rank_manifests = sorted(self.path.glob("manifest.rank*.json"),
                                key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
        if main.exists():
            self.manifest = _read_json(main)
        elif rank_manifests:
            self.manifest = _read_json(rank_manifests[0])
        else:
            raise ValueError(f"{self.path} is not a capture: it has no manifest.json")
        m = self.manifest
        self.layers: list[str] = list(m["layers"])
        self.shapes: dict[str, tuple[int, ...]] = {k: tuple(v) for k, v in m["shapes"].items()}
        self.kinds: list[str] = list(m["kinds"])
        self.summary_only: bool = bool(m.get("summary_only", False))
        self._files: dict[tuple[int, int], Path] = {}
        steps_dir = self.path / "steps"
        if steps_dir.is_dir():
            for p in steps_dir.iterdir():
                match = _STEP_FILE.match(p.name)
                if match:
                    self._files[(int(match.group(1)), int(match.group(2)))] = p
        self.steps: list[int] = sorted({s for s, _ in self._files})
        self.ranks: list[int] = sorted({r for _, r in self._files})
        self._indices: dict[int, dict[str, np.ndarray]] = {}

    def __repr__(self) -> str:
        return (f"Capture({str(self.path)!r}, model={self.manifest.get('model')!r}, "
                f"layers={len(self.layers)}, "
                f"steps={len(self.steps)}, ranks={self.ranks}, kinds={self.kinds})")

    # --- single values --------------------------------------------------------------------------
    def _check_layer(self, layer: str) -> None:
        if layer not in self.shapes:
            raise ValueError(f"unknown layer {layer!r}; the capture has {len(self.layers)} layers, "
                             f"e.g. {self.layers[:5]}")

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
        """Sampled flat indices (int64, sorted) of ``layer``, fixed for the capture; None when full."""
        self._check_layer(layer)
        if not self.manifest.get("sampled", {}).get(layer, False):
            return None
        if rank not in self._indices:
            path = self.path / f"indices.rank{rank}.safetensors"
            if not path.exists():
                found = sorted(self.path.glob("indices.rank*.safetensors"))
                if not found:
                    raise CaptureFileError(path, "the capture is sampled but its indices file is missing")
                path = found[0]
            with safe_open(str(path), framework="pt") as h:
                self._indices[rank] = {k: h.get_tensor(k).numpy() for k in h.keys()}
        return self._indices[rank][layer]

    def get(self, layer: str, step: int, rank: int = 0, kind: str = "grad",
            as_torch: bool = False) -> np.ndarray | torch.Tensor:
        """The recorded values of ``layer`` at ``step`` on ``rank``: full shape, or 1-D when sampled.

        Returned in the stored dtype (as numpy, bfloat16 becomes float32; ``as_torch=True`` keeps it).
        """
        self._check_layer(layer)
        self._check_kind(kind)
        if self.summary_only:
            raise ValueError("this is a summary-only capture: it stores no tensors; use .moments()")
        path = self._file(step, rank)
        with _StepFile(path, step, rank) as f:
            key = f"{kind}/{layer}"
            if key not in f.handle.keys():
                raise ValueError(f"{path}: no {kind!r} record of layer {layer!r} at step {step} "
                                 "(the parameter had no gradient that step)")
            t = f.get(key)
        return t if as_torch else _to_numpy(t)

    # --- iteration ------------------------------------------------------------------------------
    def records(
        self,
        kind: str = "grad",
        ranks: Sequence[int] | None = None,
        layers: Sequence[str] | None = None,
        steps: Sequence[int] | None = None,
        as_torch: bool = False,
    ) -> Iterator[CaptureRecord]:
        """Lazily yield :class:`CaptureRecord` by step, then rank, then layer (model order)."""
        self._check_kind(kind)
        if self.summary_only:
            raise ValueError("this is a summary-only capture: it stores no tensors; use .moments()")
        layer_list = self.layers if layers is None else list(layers)
        for layer in layer_list:
            self._check_layer(layer)
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
                path = self._files[(step, rank)]
                with _StepFile(path, step, rank) as f:
                    present = set(f.keys())
                    for layer in layer_list:
                        key = f"{kind}/{layer}"
                        if key in present:
                            t = f.get(key)
                            yield CaptureRecord(step, layer, rank, kind, t if as_torch else _to_numpy(t))

    def __iter__(self) -> Iterator[tuple[int, str, np.ndarray]]:
        """``for step, layer, values in capture``: rank 0 (or the lowest rank), kind "grad", lazily."""
        if not self.ranks:
            return
        rank = 0 if 0 in self.ranks else self.ranks[0]
        for rec in self.records(kind="grad", ranks=[rank]):
            yield rec.step, rec.layer, rec.values

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

    def check(self) -> pd.DataFrame:
        """Open every step file's header: one row per file with ``step, rank, file, bytes, ok, problem``."""
        rows = []
        for (step, rank), path in sorted(self._files.items()):
            try:
                with _StepFile(path, step, rank):
                    pass
                ok, problem = True, ""
            except CaptureFileError as e:
                ok, problem = False, e.problem
            rows.append({"step": step, "rank": rank, "file": str(path),
                         "bytes": path.stat().st_size if path.exists() else 0, "ok": ok, "problem": problem})
        return pd.DataFrame(rows, columns=["step", "rank", "file", "bytes", "ok", "problem"])

    def describe(self) -> str:
        """Human-readable description (what ``gradstats inspect`` prints)."""
        m = self.manifest
        files = self.check()
        steps = self.steps
        step_text = "none"
        if steps:
            step_text = f"{len(steps)} ({steps[0]} .. {steps[-1]}" + (
                f", every {m['every']})" if m.get("every") else ")")
        sample = m.get("sample")
        lines = [
            f"capture   {self.path}",
            f"model     {m.get('model')}   device {m.get('device')}   torch {m.get('torch_version')}",
            f"status    {m.get('status')}   created {m.get('created')}",
            f"kinds     {', '.join(self.kinds)}" + ("   (summary-only: moments + histograms)"
                                                    if self.summary_only else ""),
            f"sampling  {_sampling_text(sample)}   seed {m.get('seed')}",
            f"ranks     {self.ranks} of world size {m.get('world_size')}",
            f"steps     {step_text}",
            f"layers    {len(self.layers)}   files {len(files)}   "
            f"on disk {_human_bytes(int(files['bytes'].sum()) if len(files) else 0)}",
        ]
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
        for (step, rank), path in sorted(self._files.items()):
            with _StepFile(path, step, rank) as f:
                present = set(f.keys())
                for kind in self.kinds:
                    for layer in self.layers:
                        key = f"moments/{kind}/{layer}"
                        if key not in present:
                            continue
                        vals = f.get(key).numpy()
                        row: dict[str, Any] = {"step": step, "layer": layer, "rank": rank, "kind": kind}
                        row.update(dict(zip(MOMENT_FIELDS, vals.tolist(), strict=True)))
                        for field in ("n", "zeros", "nonfinite"):
                            row[field] = int(row[field])
                        counts = f.get(f"hist/{kind}/{layer}").numpy() if f"hist/{kind}/{layer}" in present \
                            else np.zeros(0, dtype=np.int64)
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
    return (d / "manifest.json").is_file() or any(d.glob("manifest.rank*.json"))


def open_capture(path: str | os.PathLike) -> Capture:
    """Open the capture directory ``path`` for lazy reading (see :class:`Capture`)."""
    return Capture(path)


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
                           overwrite=overwrite)
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
