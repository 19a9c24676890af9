"""Capture store: exact roundtrips, lazy reads, clear errors for bad files, atomic writes."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from captures import CaptureFileError, CaptureRecord, open_capture, write_capture


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    return {
        step: {
            "conv.weight": rng.normal(size=(4, 2, 3, 3)).astype(np.float32),
            "fc.bias": rng.standard_t(3, size=7).astype(np.float64),
            "fc.weight": rng.laplace(size=40).astype(np.float16),  # sampled: 40 of 12x10
        }
        for step in (0, 3, 6, 9)
    }


@pytest.fixture
def cap(tmp_path, arrays):
    idx = np.sort(np.random.default_rng(1).choice(120, 40, replace=False))
    return write_capture(tmp_path / "cap", arrays, shapes={"fc.weight": (12, 10)},
                         indices={"fc.weight": idx}, model="toy", every=3)


def test_roundtrip_exact_with_dtypes_shapes_and_indices(cap, arrays):
    assert cap.layers == ["conv.weight", "fc.bias", "fc.weight"]
    assert cap.steps == [0, 3, 6, 9] and cap.ranks == [0] and cap.kinds == ["grad"]
    assert cap.shapes == {"conv.weight": (4, 2, 3, 3), "fc.bias": (7,), "fc.weight": (12, 10)}
    for step, layers in arrays.items():
        for name, want in layers.items():
            got = cap.get(name, step)
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
            t = cap.get(name, step, as_torch=True)
            assert isinstance(t, torch.Tensor) and np.array_equal(t.numpy(), want)
    assert cap.indices("conv.weight") is None
    idx = cap.indices("fc.weight")
    assert idx.dtype == np.int64 and len(idx) == 40 and np.all(np.diff(idx) > 0)
    assert cap.manifest["model"] == "toy" and cap.manifest["status"] == "complete"


def test_iteration_and_records_follow_step_then_layer_order(cap, arrays):
    seen = [(s, layer) for s, layer, _ in cap]
    assert seen == [(s, layer) for s in (0, 3, 6, 9) for layer in cap.layers]
    recs = list(cap.records(layers=["fc.bias"], steps=[3, 9]))
    assert [r.step for r in recs] == [3, 9]
    assert all(isinstance(r, CaptureRecord) and r.rank == 0 and r.kind == "grad" for r in recs)
    np.testing.assert_array_equal(recs[1].values, arrays[9]["fc.bias"])


def test_summary_table(cap):
    s = cap.summary()
    assert isinstance(s, pd.DataFrame)
    row = s.set_index("layer").loc["fc.weight"]
    assert row["numel"] == 120 and row["stored"] == 40 and bool(row["sampled"])
    assert row["dtype"] == "float16" and row["steps"] == 4 and row["bytes"] == 40 * 2 * 4
    conv = s.set_index("layer").loc["conv.weight"]
    assert conv["bytes"] == 72 * 4 * 4 and conv["shape"] == "4x2x3x3"
    text = cap.describe()
    assert "toy" in text and "fc.weight" in text and "UNREADABLE" not in text


def test_updates_and_multi_rank(tmp_path, arrays):
    upd = {s: {k: -v for k, v in d.items()} for s, d in arrays.items()}
    for rank in (0, 1):
        shifted = {s: {k: v + rank for k, v in d.items()} for s, d in arrays.items()}
        write_capture(tmp_path / "c", shifted, updates=upd, rank=rank, world_size=2,
                      shapes={"fc.weight": (40,)})
    cap = open_capture(tmp_path / "c")
    assert cap.ranks == [0, 1] and cap.kinds == ["grad", "update"]
    np.testing.assert_array_equal(cap.get("fc.bias", 6, rank=1), arrays[6]["fc.bias"] + 1)
    np.testing.assert_array_equal(cap.get("fc.bias", 6, rank=0, kind="update"), -arrays[6]["fc.bias"])
    ranks = [r.rank for r in cap.records(layers=["fc.bias"], steps=[0])]
    assert ranks == [0, 1]
    with pytest.raises(ValueError, match=r"no records of rank\(s\) \[2\]"):
        list(cap.records(ranks=[2]))


def test_truncated_file_names_the_file_and_other_steps_stay_readable(cap, arrays):
    bad = cap.path / "steps" / "000000003.rank0.safetensors"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    cap = open_capture(cap.path)
    with pytest.raises(CaptureFileError, match="000000003.rank0.safetensors.*truncated"):
        cap.get("fc.bias", 3)
    np.testing.assert_array_equal(cap.get("fc.bias", 6), arrays[6]["fc.bias"])
    check = cap.check()
    steps = check[check.role == "step"]
    assert steps["ok"].tolist() == [True, False, True, True]
    assert cap.damaged == [(str(bad), check.problem[~check.ok].iloc[0])] and cap.status == "damaged"
    assert "UNREADABLE 1 file" in cap.describe()
    with pytest.raises(CaptureFileError):
        list(cap)  # iteration reaches the bad step and says which file


def test_foreign_safetensors_and_garbage_files(cap):
    foreign = cap.path / "steps" / "000000006.rank0.safetensors"
    save_file({"x": torch.zeros(3)}, str(foreign))
    garbage = cap.path / "steps" / "000000009.rank0.safetensors"
    garbage.write_bytes(b"\x00" * 5)
    cap = open_capture(cap.path)
    with pytest.raises(CaptureFileError, match="000000006.rank0.*not one written by gradstats"):
        cap.get("fc.bias", 6)
    with pytest.raises(CaptureFileError, match="000000009.rank0"):
        cap.get("fc.bias", 9)
    assert cap.get("fc.bias", 0).shape == (7,)


def test_stray_temp_files_are_ignored(cap):
    (cap.path / "steps" / ".000000012.rank0.safetensors.tmp-999").write_bytes(b"partial")
    assert open_capture(cap.path).steps == [0, 3, 6, 9]


def test_clear_errors_for_bad_requests(cap, tmp_path):
    with pytest.raises(ValueError, match="unknown layer"):
        cap.get("nope", 0)
    with pytest.raises(ValueError, match="no record of step 4"):
        cap.get("fc.bias", 4)
    with pytest.raises(ValueError, match="no records of rank 1"):
        cap.get("fc.bias", 0, rank=1)
    with pytest.raises(ValueError, match="kind 'update' was not recorded"):
        cap.get("fc.bias", 0, kind="update")
    with pytest.raises(FileNotFoundError):
        open_capture(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no manifest.json"):
        open_capture(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(CaptureFileError, match="manifest.json.*not a gradstats-capture manifest"):
        open_capture(tmp_path / "other")
    assert cap.moments() is None


def test_write_capture_refuses_existing_and_bad_input(cap, arrays, tmp_path):
    with pytest.raises(ValueError, match="already holds a capture"):
        write_capture(cap.path, arrays, shapes={"fc.weight": (40,)})
    again = write_capture(cap.path, {1: {"a": np.ones(2)}}, overwrite=True)
    assert again.steps == [1] and again.layers == ["a"]
    with pytest.raises(ValueError, match="give its full shape"):
        write_capture(tmp_path / "x", {0: {"a": np.ones(3)}}, indices={"a": [0, 1, 2]})
    with pytest.raises(ValueError, match="out of range"):
        write_capture(tmp_path / "y", {0: {"a": np.ones(3)}}, indices={"a": [0, 1, 9]}, shapes={"a": (5,)})
    with pytest.raises(ValueError, match="expected"):
        write_capture(tmp_path / "z", {0: {"a": np.ones(3)}, 1: {"a": np.ones(4)}})


def test_resolve_capture_dir_accepts_run_and_capture_dirs(tmp_path):
    from captures import resolve_capture_dir

    cap = write_capture(tmp_path / "run" / "capture", {0: {"w": np.ones(4, np.float32)}})
    assert resolve_capture_dir(tmp_path / "run") == cap.path
    assert resolve_capture_dir(cap.path) == cap.path
    assert resolve_capture_dir(tmp_path / "nowhere") == tmp_path / "nowhere"  # opening it gives the error
