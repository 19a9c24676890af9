"""Capture.check: every checksum verified, stale temp files reported and removed by repair."""

import pytest
from safetensors import safe_open
from safetensors.torch import save_file
from store_faults import layer_spec as _spec
from store_faults import rewrite_step as _rewrite_step
from store_faults import small_sampled_capture

from captures import CaptureFileError, open_capture
from captures.store import CaptureWriter


@pytest.fixture
def cap(tmp_path):
    return small_sampled_capture(tmp_path)


def test_bit_flip_is_caught_by_checksum_and_old_captures_still_read(cap):
    path = cap.path / "steps" / "000000002.rank0.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10  # inside the last tensor's bytes
    path.write_bytes(bytes(data))
    c = open_capture(cap.path)
    assert c.damaged == []  # headers are fine: only reading the data can tell
    table = c.check()
    bad = table[~table.ok]
    assert bad.file.tolist() == [str(path)] and "fails its checksum" in bad.problem.iloc[0]
    assert c.status == "damaged"
    with pytest.raises(CaptureFileError, match="fails its checksum"):
        open_capture(cap.path, verify=True).get("b", 2)
    with pytest.raises(CaptureFileError, match="fails its checksum"):
        list(open_capture(cap.path).records(verify=True))
    assert open_capture(cap.path).get("b", 2).shape == (20,)  # unverified read: the caller chose
    # a capture written before checksums: no crc32 metadata, reads and checks ok
    for p in (cap.path / "steps").iterdir():
        _rewrite_step(p, lambda t: None)
        with safe_open(str(p), "pt") as h:
            meta = {k: v for k, v in h.metadata().items() if k != "crc32"}
            tensors = {k: h.get_tensor(k) for k in h.keys()}
        save_file(tensors, str(p), metadata=meta)
    old = open_capture(cap.path, verify=True)
    assert old.check().ok.all() and old.status == "complete"
    assert old.get("a", 0).shape == (3, 4)


def test_stale_temp_files_are_removed_by_repair_and_by_overwrite(cap, tmp_path):
    stale = [cap.path / "steps" / ".000000007.rank0.safetensors.tmp-99999",
             cap.path / ".manifest.json.tmp-99999", cap.path / ".manifest.rank0.json.tmp-99999"]
    for p in stale:
        p.write_bytes(b"partial")
    table = open_capture(cap.path).check()
    temps = table[table.role == "temp"]
    assert sorted(temps.file) == sorted(map(str, stale)) and temps.ok.all()
    assert all("dead writer" in p for p in temps.problem) and all(p.exists() for p in stale)
    open_capture(cap.path).check(repair=True)
    assert not any(p.exists() for p in stale)
    # a live writer's temp file is left alone; overwrite clears a dead writer's
    live = CaptureWriter(tmp_path / "live", [_spec()])
    tmp = tmp_path / "live" / "steps" / ".000000001.rank0.safetensors.tmp-4242"
    tmp.write_bytes(b"x")
    t = open_capture(tmp_path / "live").check(repair=True)
    assert t[t.role == "temp"].problem.tolist() == ["temp file of a live writer"] and tmp.exists()
    live.finish()
    CaptureWriter(tmp_path / "live", [_spec()], overwrite=True).finish()
    assert not tmp.exists()
