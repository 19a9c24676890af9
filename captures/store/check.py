"""Checking a capture: which files are damaged, every CRC-32, removing dead writers' temp files, status."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from captures.store.errors import CaptureFileError
from captures.store.layout import (
    INDICES_FILES,
    MANIFEST,
    _rank_of_manifest,
    _stale_temp_files,
    _temp_rank,
    indices_file_name,
)
from captures.store.lock import _lock_is_free


class CaptureIntegrity:
    """The integrity half of :class:`~captures.store.reader.Capture`: damage, check and repair, status.

    A mixin: it uses the reader's ``path``, ``rank_manifests``, ``_files``, ``_damage``, ``_scanned``,
    ``_indices``, ``_open_step`` and ``_load_indices``.
    """

    @property
    def damaged(self) -> list[tuple[str, str]]:
        """Every damaged file as ``(path, reason)``: the headers of all files are checked once (cheap,
        no tensor data is read), plus whatever a read has found since. ``check()`` also verifies data."""
        if not self._scanned:
            self._scan(verify=False)
        return sorted(self._damage.items())

    def readable_steps(self, rank: int = 0) -> list[int]:
        """The recorded steps of ``rank`` whose step file is not in :attr:`damaged` (headers checked)."""
        bad = {p for p, _ in self.damaged}
        return sorted(s for (s, r), path in self._files.items() if r == rank and str(path) not in bad)

    def _scan(self, verify: bool) -> list[dict[str, Any]]:
        rows = []
        for r, m in sorted(self.rank_manifests.items()):
            if any(m.get("sampled", {}).values()):
                path = self.path / indices_file_name(r)
                ok, problem = True, ""
                if not os.path.lexists(path):
                    if any(self.path.glob(INDICES_FILES)):
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
                        or Path(p).name == MANIFEST}  # re-derive the rest from the files
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
