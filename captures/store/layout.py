"""Names and places of a capture directory's files: format constants, step/manifest/temp file names.

The layout is described in :mod:`captures.store`; every other module of the store finds files through
these names.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

FORMAT = "gradstats-capture"
FORMAT_VERSION = 1
KINDS = ("grad", "update")
#: capture statuses: as written by the writer, then the two a reader derives
STATUSES = ("recording", "complete", "aborted", "interrupted", "damaged")

_STEP_FILE = re.compile(r"^(\d+)\.rank(\d+)\.safetensors$")
_TEMP_FILE = re.compile(r"^\.(.+)\.tmp-\d+$")
_RANK_IN_NAME = re.compile(r"(?:^|\.)rank(\d+)\.")

#: rank 0's manifest, the one :attr:`Capture.manifest <captures.store.reader.Capture.manifest>` returns
MANIFEST = "manifest.json"
RANK_MANIFESTS = "manifest.rank*.json"
INDICES_FILES = "indices.rank*.safetensors"


def step_file_name(step: int, rank: int) -> str:
    """File name (inside ``steps/``) of the record of ``step`` on ``rank``."""
    return f"{step:09d}.rank{rank}.safetensors"


def rank_manifest_name(rank: int) -> str:
    """File name of ``rank``'s own manifest."""
    return f"manifest.rank{rank}.json"


def indices_file_name(rank: int) -> str:
    """File name of ``rank``'s sampled indices."""
    return f"indices.rank{rank}.safetensors"


def rank_step_files(rank: int) -> str:
    """Glob (inside ``steps/``) of ``rank``'s step files."""
    return f"*.rank{rank}.safetensors"


def _lock_path(directory: Path, rank: int) -> Path:
    """The writer lock of ``rank``, held (``flock``) by its one live writer."""
    return directory / f".lock.rank{rank}"


def _rank_of_manifest(p: Path) -> int:
    m = re.fullmatch(r"manifest\.rank(\d+)\.json", p.name)
    return int(m.group(1)) if m else -1


def _temp_rank(name: str) -> int | None:
    """The rank a temp file's target belongs to (``manifest.json`` is rank 0's); None if not ours."""
    m = _TEMP_FILE.match(name)
    if not m:
        return None
    target = m.group(1)
    if target == MANIFEST:
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


def is_capture_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a capture: its ``manifest.json`` or a rank's ``manifest.rank<r>.json``
    (a link counts: opening it then says why it is refused)."""
    p = Path(path)
    return os.path.lexists(p / MANIFEST) or any(p.glob(RANK_MANIFESTS))


def resolve_capture_dir(path: str | os.PathLike) -> Path:
    """The capture directory that `path` names: the path itself, or its ``capture/`` sub-directory
    when `path` is a run directory (``runs/x`` holding ``runs/x/capture``)."""
    p = Path(path)
    sub = p / "capture"
    if is_capture_dir(sub) and not is_capture_dir(p):
        return sub
    return p
