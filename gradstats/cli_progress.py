"""Progress of `gradstats` sub-commands: a tqdm bar on a terminal, plain lines in a log, or nothing.

A tqdm bar redraws itself with carriage returns and, when bars nest, cursor-up escape codes; in a
log file that is noise. When stderr is not a terminal the CLI uses `LineProgress` instead: one
plain line when the work starts, one at most every `LINE_INTERVAL_S` seconds, one when it ends.

The stage functions that draw their own bar take `progress: bool | factory`
(`captures.progress`): the CLI hands them `bars(enabled)`, which is tqdm's class on a terminal,
`LineProgress` in a log, or False.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

LINE_INTERVAL_S = 10.0
"""Seconds between two progress lines of one task in a log."""


def on_terminal(stream: TextIO | None = None) -> bool:
    """True when progress goes to an interactive terminal (then tqdm bars, else plain lines)."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class LineProgress:
    """The part of tqdm's interface the stages use, printed as plain lines (no \\r, no escape codes).

    `LineProgress(iterable=None, total=None, desc="", unit="it", disable=False, **ignored)`;
    `update(n)`, `set_postfix(**kw)`, `set_postfix_str(s)`, `set_description(s)`, `close()`,
    iteration and `with`.
    """

    def __init__(self, iterable: Iterable | None = None, desc: str | None = None, total: float | None = None,
                 unit: str = "it", disable: bool = False, file: TextIO | None = None,
                 interval: float | None = None, **_: Any) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit, self.disable = total, desc or "", unit, disable
        self.file = file or sys.stderr
        self.interval = LINE_INTERVAL_S if interval is None else interval
        self.n = 0
        self.postfix = ""
        self.start = time.monotonic()
        self._last = self.start
        self._closed = False
        self._line("started")

    # --- tqdm's interface -------------------------------------------------------------------------
    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._line()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kw: Any) -> None:
        items = {**(ordered_dict or {}), **kw}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._line("done")

    # --- one line -----------------------------------------------------------------------------------
    def _line(self, event: str = "") -> None:
        if self.disable:
            return
        elapsed = time.monotonic() - self.start
        unit = self.unit if self.unit.endswith("s") else self.unit + "s"
        if self.total:
            count = f"{self.n:g}/{self.total:g} {unit}"
            if self.n:
                count += f" ({100 * self.n / self.total:.0f}%)"
        else:
            count = f"{self.n:g} {unit}" if self.n else ""
        head = ": ".join(t for t in (self.desc, count) if t)
        parts = [t for t in (head, f"{_clock(elapsed)} elapsed") if t]
        if self.total and 0 < self.n < self.total and event != "done":
            parts.append(f"~{_clock(elapsed * (self.total - self.n) / self.n)} left")
        if self.postfix:
            parts.append(self.postfix)
        if event:
            parts.append(event)
        print("[progress] " + ", ".join(parts), file=self.file, flush=True)


def bars(enabled: bool) -> Any:
    """The `progress=` argument for the stage functions: tqdm's class on a terminal, `LineProgress`
    in a log, False when disabled (see `captures.progress`)."""
    if not enabled:
        return False
    if on_terminal():
        from tqdm.auto import tqdm

        return tqdm
    return LineProgress


def bar(total: float | None, desc: str, unit: str, enabled: bool) -> Any:
    """A progress bar for work the CLI drives itself: tqdm on a terminal, `LineProgress` in a log."""
    if not enabled:
        return LineProgress(total=total, desc=desc, unit=unit, disable=True)
    return bars(True)(total=total, desc=desc, unit=unit)
