"""`fit_capture(progress=factory)`: one bar over the records, each record counted once, then closed."""

from __future__ import annotations

import numpy as np

from captures import write_capture
from gradstats.capture_fits import fit_capture


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.done = 0.0
        self.closed = 0

    def __call__(self, **kw):
        self.calls.append(kw)
        return self

    def update(self, n: float = 1) -> None:
        self.done += n

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        self.closed += 1


def test_fit_capture_counts_every_record_on_the_factory_bar(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {s: {"a": rng.laplace(size=500).astype(np.float32), "b": rng.normal(size=300).astype(np.float32)}
              for s in (0, 1, 2)}
    cap = write_capture(tmp_path / "c", arrays)
    rec = Recorder()
    df = fit_capture(cap, families=["laplace"], progress=rec, jobs=1)
    assert rec.calls == [{"total": 6, "desc": "fit", "unit": "record"}]
    assert rec.done == 6 and rec.closed == 1 and len(df) == 6
