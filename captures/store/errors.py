"""The store's errors, and how a problem is worded in one line."""

from __future__ import annotations

import os
from typing import Any


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


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."
