"""Progress of long work: what the `progress=` argument of a stage function means.

Every long-running stage function takes ``progress: bool | ProgressFactory``:

- ``True``: a tqdm bar (``tqdm.auto.tqdm``, looked up when the work starts);
- ``False``: no bar;
- a callable: called once as ``progress(total=N, desc="fit", unit="record")`` (``total`` may be
  None when unknown) and must return a :class:`ProgressBar`, an object with ``update(n=1)``,
  ``set_postfix_str(s="")`` and ``close()``. tqdm's class is such a factory; the ``gradstats``
  command line passes one that prints plain lines when stderr is a log file.

It lives in stage 1 so that every later stage can take the same argument (data flows one way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class ProgressBar(Protocol):
    """The part of tqdm's bar interface the stages call."""

    def update(self, n: float = 1) -> Any: ...

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> Any: ...

    def close(self) -> Any: ...


ProgressFactory = Callable[..., ProgressBar]
"""``factory(total=int | None, desc=str, unit=str) -> ProgressBar``."""

Progress = bool | ProgressFactory
"""The type of every stage's ``progress=`` argument."""


def open_bar(progress: Progress, *, total: int | None, desc: str, unit: str) -> ProgressBar:
    """The bar that ``progress`` asks for: the factory's, else a tqdm bar, disabled when falsy."""
    if callable(progress):
        return progress(total=total, desc=desc, unit=unit)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not progress)
