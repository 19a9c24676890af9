"""The manifest schema: what is stored per layer (:class:`LayerSpec`), JSON encoding, validation."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from captures.store.errors import CaptureFileError, _short
from captures.store.files import _ST_DTYPES, _read_regular
from captures.store.layout import FORMAT, FORMAT_VERSION, KINDS, STATUSES

_MAX_MANIFEST_BYTES = 64 << 20


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


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic, torch.Tensor)) and np.size(value) == 1:
        return value.item()
    if isinstance(value, (np.ndarray, tuple, set)):
        return list(np.asarray(value).tolist()) if isinstance(value, np.ndarray) else list(value)
    if isinstance(value, (torch.dtype, torch.device, Path)):
        return str(value)
    raise TypeError(f"manifest value of type {type(value).__name__} is not JSON serialisable: {value!r}")


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


def _read_json(path: Path) -> dict[str, Any]:
    data = _read_regular(path, _MAX_MANIFEST_BYTES)
    try:
        parsed = json.loads(data.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CaptureFileError(path, f"unreadable manifest ({e})") from e
    except RecursionError as e:
        raise CaptureFileError(path, "unreadable manifest (nested too deeply)") from e
    return validate_manifest(path, parsed)
