"""Capture: a capture directory opened for lazy reading (values, records, tables, shards joined)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from captures.store.check import CaptureIntegrity
from captures.store.errors import CaptureFileError
from captures.store.files import _Expected, _StepFile, _torch_dtype
from captures.store.layout import _STEP_FILE, INDICES_FILES, MANIFEST, _rank_of_manifest, indices_file_name
from captures.store.manifest import _read_json
from captures.summary import MOMENT_FIELDS, histogram_edges


@dataclass(frozen=True)
class CaptureRecord:
    """One recorded tensor: ``layer``'s values (``kind`` grad/update) at optimizer ``step`` on ``rank``."""

    step: int
    layer: str
    rank: int
    kind: str
    values: np.ndarray | torch.Tensor


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds every bfloat16 value exactly
        t = t.to(torch.float32)
    return t.numpy()


class Capture(CaptureIntegrity):
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
        main = self.path / MANIFEST
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
            path = self.path / indices_file_name(rank)
            if not os.path.lexists(path):
                found = sorted(self.path.glob(INDICES_FILES))
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

    # --- tables ---------------------------------------------------------------------------------
    def summary(self) -> pd.DataFrame:
        """One row per layer: shape, numel, what a record stores, dtype, sampled, steps, bytes.

        A capture of tensors stores ``stored`` entries per record (``numel``, or the sample size); a
        summary-only capture stores statistics instead of entries: ``moments`` values
        (:data:`captures.summary.MOMENT_FIELDS`) and ``hist_bins`` histogram counts per record.
        """
        m = self.manifest
        n_files = len(self._files)
        rows = []
        for layer in self.layers:
            numel = int(np.prod(self.shapes[layer], dtype=np.int64))
            shape = "x".join(map(str, self.shapes[layer])) or "scalar"
            row: dict[str, Any] = {"layer": layer, "shape": shape, "numel": numel}
            if self.summary_only:
                bins = int(m.get("hist_bins", 0))
                row.update({"moments": len(MOMENT_FIELDS), "hist_bins": bins, "sampled": False,
                            "dtype": "float64+int64"})
                per_record = (len(MOMENT_FIELDS) + bins) * 8
            else:
                stored = int(m.get("stored_numel", {}).get(layer, numel))
                dtype = m.get("stored_dtypes", {}).get(layer, "float32")
                row.update({"stored": stored, "sampled": bool(m.get("sampled", {}).get(layer, False)),
                            "dtype": dtype})
                per_record = stored * _torch_dtype(dtype).itemsize
            row.update({"steps": len(self.steps), "bytes": per_record * len(self.kinds) * n_files})
            rows.append(row)
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


def open_capture(path: str | os.PathLike, verify: bool = False) -> Capture:
    """Open the capture directory ``path`` for lazy reading (see :class:`Capture`); ``verify=True``
    checks every tensor's CRC-32 as it is read."""
    return Capture(path, verify=verify)
