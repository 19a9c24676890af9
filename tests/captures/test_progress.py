"""`progress=`: True draws tqdm, False nothing, a factory is called once with total / desc / unit and its bar
sees every unit of work, then close()."""

from __future__ import annotations

import tqdm.auto

from captures.progress import open_bar
from captures.workloads import capture_workload


class Recorder:
    """A bar factory that remembers what it was asked and told."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.done = 0.0
        self.postfix: list[str] = []
        self.closed = 0

    def __call__(self, **kw):
        self.calls.append(kw)
        return self

    def update(self, n: float = 1) -> None:
        self.done += n

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix.append(s)

    def close(self) -> None:
        self.closed += 1


def test_open_bar_resolves_bool_and_factory():
    rec = Recorder()
    assert open_bar(rec, total=7, desc="x", unit="thing") is rec
    assert rec.calls == [{"total": 7, "desc": "x", "unit": "thing"}]
    on, off = open_bar(True, total=3, desc="a", unit="u"), open_bar(False, total=3, desc="a", unit="u")
    try:
        assert isinstance(on, tqdm.auto.tqdm) and (on.total, on.disable) == (3, False) and off.disable
    finally:
        on.close()
        off.close()


def test_capture_workload_reports_every_step_to_the_factory(tmp_path):
    rec = Recorder()
    cap = capture_workload("mlp", tmp_path / "c", steps=12, every=4, progress=rec)
    assert rec.calls == [{"total": 12, "desc": "capture mlp", "unit": "step"}]
    assert rec.done == 12 and rec.closed == 1 and cap.steps == [0, 4, 8]
    assert rec.postfix and rec.postfix[-1].startswith("loss=")
