"""Is there a capture here (`is_capture_dir`), which steps are readable (`readable_steps`), and the
overwrite refusal naming both the keyword and the command-line flag."""

import numpy as np
import pytest

from captures import is_capture_dir, open_capture, resolve_capture_dir, write_capture


def _arrays(steps=(0, 5, 10)):
    rng = np.random.default_rng(0)
    return {s: {"w": rng.normal(size=300).astype(np.float32)} for s in steps}


def test_is_capture_dir_sees_either_manifest(tmp_path):
    cap = write_capture(tmp_path / "run" / "capture", _arrays())
    assert is_capture_dir(cap.path) and is_capture_dir(str(cap.path))
    assert not is_capture_dir(tmp_path / "run") and not is_capture_dir(tmp_path / "nowhere")
    assert resolve_capture_dir(tmp_path / "run") == cap.path
    (cap.path / "manifest.json").unlink()  # rank 0's manifest gone: its rank manifest still says "capture"
    assert is_capture_dir(cap.path) and list(cap.path.glob("manifest.rank*.json"))
    for p in cap.path.glob("manifest.rank*.json"):
        p.unlink()
    assert not is_capture_dir(cap.path)  # step files alone are not a capture one can open


def test_readable_steps_leave_out_the_damaged_file(tmp_path):
    cap = write_capture(tmp_path / "c", _arrays())
    assert cap.readable_steps() == [0, 5, 10] and cap.readable_steps(rank=1) == []
    path = tmp_path / "c" / "steps" / "000000005.rank0.safetensors"
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    cap = open_capture(tmp_path / "c")
    assert cap.readable_steps() == [0, 10] and cap.steps == [0, 5, 10]
    assert [p for p, _ in cap.damaged] == [str(path)] and cap.status == "damaged"
    np.testing.assert_array_equal(cap.get("w", 10), _arrays()[10]["w"])


def test_overwrite_refusal_names_the_keyword_and_the_flag(tmp_path):
    write_capture(tmp_path / "c", _arrays())
    with pytest.raises(ValueError, match="already holds a capture") as info:
        write_capture(tmp_path / "c", _arrays())
    assert "overwrite=True" in str(info.value) and "--overwrite" in str(info.value)
