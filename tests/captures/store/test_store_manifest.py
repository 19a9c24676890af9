"""The manifest schema: bad fields give one line naming file and field; steps and indices match it."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from store_faults import rewrite_step as _rewrite_step
from store_faults import small_sampled_capture

from captures import CaptureFileError, open_capture, write_capture


@pytest.fixture
def cap(tmp_path):
    return small_sampled_capture(tmp_path)


@pytest.mark.parametrize("corrupt, field", [
    (lambda m: m.pop("layers"), "layers"),
    (lambda m: m.update(format_version="2"), "format_version"),
    (lambda m: m.update(format_version=True), "format_version"),
    (lambda m: m.update(layers=5), "layers"),
    (lambda m: m.update(layers=["a", "a"]), "layers"),
    (lambda m: m["shapes"].pop("b"), "shapes"),
    (lambda m: m["shapes"].update(a=[3, -4]), "shapes"),
    (lambda m: m["stored_dtypes"].update(a="float33"), "stored_dtypes"),
    (lambda m: m["stored_numel"].update(b="20"), "stored_numel"),
    (lambda m: m.update(kinds=["grad", "grads"]), "kinds"),
    (lambda m: m.update(world_size=0), "world_size"),
    (lambda m: m.update(rank=3), "rank"),
    (lambda m: m.update(status=["complete"]), "status"),
    (lambda m: m.update(aliases={"x": "missing"}), "aliases"),
])
def test_bad_manifest_fields_give_one_line_naming_file_and_field(cap, corrupt, field):
    path = cap.path / "manifest.json"
    m = json.loads(path.read_text())
    corrupt(m)
    path.write_text(json.dumps(m))
    with pytest.raises(CaptureFileError) as info:
        open_capture(cap.path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(path)) and f"'{field}'" in text


def test_deeply_nested_and_huge_manifests(cap):
    path = cap.path / "manifest.json"
    m = json.loads(path.read_text())
    path.write_text(json.dumps(m)[:-1] + ', "extra2": ' + "[" * 200_000 + "]" * 200_000 + "}")
    with pytest.raises(CaptureFileError, match="manifest.json: unreadable manifest"):
        open_capture(cap.path)
    with open(path, "wb") as f:
        f.truncate(65 << 20)  # sparse
    with pytest.raises(CaptureFileError, match="a manifest is at most"):
        open_capture(cap.path)


def test_step_tensors_must_match_the_manifest(cap):
    path = cap.path / "steps" / "000000001.rank0.safetensors"
    _rewrite_step(path, lambda t: t.update({"grad/a": t["grad/a"].double()}))
    with pytest.raises(CaptureFileError, match=r"tensor 'grad/a' is F64 \[3, 4\]; the manifest says float32"):
        open_capture(cap.path).get("b", 1)  # any read of the file
    _rewrite_step(path, lambda t: t.update({"grad/a": t["grad/a"].float().reshape(12)}))
    with pytest.raises(CaptureFileError, match=r"is F32 \[12\]; the manifest says float32 \[3, 4\]"):
        open_capture(cap.path).get("a", 1)
    _rewrite_step(path, lambda t: t.update({"grad/a": t["grad/a"].reshape(3, 4), "grad/zzz": torch.zeros(2)}))
    with pytest.raises(CaptureFileError, match="holds tensor 'grad/zzz', which the manifest does not list"):
        open_capture(cap.path).get("b", 1)


def test_out_of_range_or_unsorted_indices_are_refused(cap):
    path = cap.path / "indices.rank0.safetensors"
    for bad in (np.arange(20) * 10**11, np.arange(20)[::-1].copy(), np.zeros(20)):
        save_file({"b": torch.from_numpy(bad.astype(np.int64))}, str(path),
                  metadata={"format": "gradstats-capture", "rank": "0"})
        c = open_capture(cap.path)
        with pytest.raises(CaptureFileError, match=r"layer 'b' are not strictly increasing in \[0, 40\)"):
            c.indices("b")
        assert [p for p, _ in c.damaged] == [str(path)] and not c.check().ok.all()
    save_file({"b": torch.arange(21)}, str(path), metadata={"format": "gradstats-capture", "rank": "0"})
    with pytest.raises(CaptureFileError, match=r"tensor 'b' is I64 \[21\]"):
        open_capture(cap.path).indices("b")


def test_manifest_accepts_numpy_scalars(tmp_path):
    cap = write_capture(tmp_path / "c", {0: {"a": np.ones(2)}}, every=np.int64(2))
    assert cap.manifest["every"] == 2
