"""CaptureWriter: one writer per rank (also across processes), aborted runs, a bounded fault-injection round
(RELIABILITY.md)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load
from store_faults import layer_spec as _spec

from captures import CaptureBusyError, CaptureFileError, open_capture, write_capture
from captures.store import CaptureWriter

HERE = Path(__file__).resolve().parents[1]  # tests/captures, where capture_workers.py lives


def _env():
    path = os.pathsep.join([str(HERE.parent.parent), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")


def test_second_writer_on_the_same_rank_fails_clearly_and_overwrite_waits_for_it(tmp_path):
    out = tmp_path / "c"
    first = CaptureWriter(out, [_spec()])
    first.write_step(0, {"grad/w": torch.ones(8)})
    for overwrite in (False, True):
        with pytest.raises(CaptureBusyError, match=r"rank 0 is being written by another recorder \(pid \d"):
            CaptureWriter(out, [_spec()], overwrite=overwrite)
    assert open_capture(out).get("w", 0).tolist() == [1.0] * 8  # the live run's data untouched
    other_rank = CaptureWriter(out, [_spec()], rank=1, world_size=2)  # ranks do not exclude each other
    other_rank.finish()
    first.finish()
    assert not (out / ".lock.rank0").exists()
    with pytest.raises(ValueError, match="already holds a capture"):
        CaptureWriter(out, [_spec()])
    second = CaptureWriter(out, [_spec()], overwrite=True)  # nobody holds it now
    second.write_step(5, {"grad/w": torch.zeros(8)})
    second.finish()
    assert open_capture(out).steps == [5]


@pytest.mark.slow
def test_two_writer_processes_started_together_one_wins_and_the_capture_is_one_run(tmp_path):
    out = tmp_path / "c"
    procs = [subprocess.Popen([sys.executable, str(HERE / "capture_workers.py"), "write-run", str(out), tag],
                              env=_env(), stderr=subprocess.PIPE) for tag in ("1", "2")]
    deadline = time.time() + 120
    while not all((tmp_path / f"ready{t}").exists() for t in ("1", "2")):
        assert time.time() < deadline, "writer processes did not start"
        time.sleep(0.01)
    (tmp_path / "go").touch()
    codes = [p.wait(timeout=120) for p in procs]
    errs = [p.stderr.read().decode() for p in procs]
    assert sorted(codes) == [0, 3], errs
    loser = codes.index(3)
    assert "is being written by another recorder" in errs[loser]
    winner = 1 + codes.index(0)
    cap = open_capture(out)
    assert cap.status == "complete" and cap.manifest["model"] == f"run{winner}.0"
    assert cap.steps == list(range(40))
    assert all(np.all(v == winner) for _, _, v in cap)


def test_abort_marks_the_capture_aborted_with_the_reason(tmp_path):
    w = CaptureWriter(tmp_path / "c", [_spec()])
    w.write_step(0, {"grad/w": torch.ones(8)})
    assert open_capture(tmp_path / "c").status == "recording"
    w.abort("KeyboardInterrupt: ")
    c = open_capture(tmp_path / "c")
    assert c.status == "aborted" and c.manifest["abort_reason"] == "KeyboardInterrupt: "
    assert c.steps == [0] and "status    aborted (KeyboardInterrupt: )" in c.describe()


@pytest.mark.slow
def test_fault_injection_round(tmp_path):
    """SIGKILL a writer 3 times mid-run, then 40 seeded manifest mutations and 30 byte corruptions of
    step files: every outcome is a readable capture or a CaptureFileError; no damage goes unnoticed."""
    rng = np.random.default_rng(2026)
    for kill in range(3):
        out = tmp_path / f"killed{kill}"
        proc = subprocess.Popen([sys.executable, str(HERE / "capture_workers.py"), str(out)], env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 60
            want = 2 + int(rng.integers(0, 4))
            while not (out / "steps").is_dir() or len(list((out / "steps").glob("*.safetensors"))) < want:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.time() < deadline, "writer too slow"
                time.sleep(0.005)
            time.sleep(float(rng.uniform(0, 0.05)))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        c = open_capture(out)
        assert c.status == "interrupted" and c.check().ok.all()
        assert c.steps == list(range(len(c.steps)))
        for step in c.steps:
            v = c.get("w", step, verify=True)
            assert v.min() == v.max() == step + 1
        c.check(repair=True)
        assert not [p for p in out.rglob("*") if ".tmp-" in p.name]

    base = write_capture(tmp_path / "base", {s: {"a": rng.normal(size=(3, 4)).astype(np.float32)}
                                             for s in range(3)})
    good = json.loads((base.path / "manifest.json").read_text())
    junk = [None, True, -1, 2**70, "x", [], {}, [1, "a"], {"a": [3, 4]}, 1.5]
    for _ in range(40):
        m = json.loads(json.dumps(good))
        key = list(m)[int(rng.integers(len(m)))]
        if rng.random() < 0.3:
            del m[key]
        else:
            m[key] = junk[int(rng.integers(len(junk)))]
        (base.path / "manifest.json").write_text(json.dumps(m))
        try:
            c = open_capture(base.path)
            c.check()
            [v for _, _, v in c]
        except CaptureFileError as e:
            assert "\n" not in str(e) and "manifest.json" in str(e)
    (base.path / "manifest.json").write_text(json.dumps(good))
    path = base.path / "steps" / "000000001.rank0.safetensors"
    original = path.read_bytes()
    want = load(original)["grad/a"]
    for _ in range(30):
        data = bytearray(original)
        for pos in rng.integers(0, len(data), size=int(rng.integers(1, 4))):
            data[pos] ^= 1 << int(rng.integers(8))
        if rng.random() < 0.2:
            data = data[: int(rng.integers(len(data)))]
        path.write_bytes(bytes(data))
        c = open_capture(base.path)
        table = c.check()
        if bytes(data) != original and table.ok.all():
            # only a flip in the header's whitespace padding can leave every tensor intact
            assert torch.equal(load(bytes(data))["grad/a"], want)
    path.write_bytes(original)
    assert open_capture(base.path).check().ok.all()
