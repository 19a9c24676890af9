"""Capture file I/O: FIFOs and symlinks refused, disk full leaves no temp file, fsync, one mode."""

import errno
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from store_faults import layer_spec as _spec
from store_faults import small_sampled_capture

from captures import CaptureFileError, CaptureWriteError, open_capture, store, write_capture
from captures.store import CaptureWriter, file_mode


@pytest.fixture
def cap(tmp_path):
    return small_sampled_capture(tmp_path)


@pytest.mark.timeout(60)
def test_fifo_named_like_a_step_or_the_manifest_never_blocks(cap):
    step = cap.path / "steps" / "000000001.rank0.safetensors"
    step.unlink()
    os.mkfifo(step)
    c = open_capture(cap.path)
    assert c.steps == [0, 1, 2]
    with pytest.raises(CaptureFileError, match=r"000000001.rank0.safetensors: is a FIFO, not a regular file"):
        c.get("a", 1)
    table = c.check()
    assert table[~table.ok].file.tolist() == [str(step)] and c.status == "damaged"
    assert "UNREADABLE 1 file" in c.describe()
    np.testing.assert_array_equal(c.get("a", 2), cap.get("a", 2))
    idx = cap.path / "indices.rank0.safetensors"
    idx.unlink()
    os.mkfifo(idx)
    with pytest.raises(CaptureFileError, match="indices.rank0.safetensors: is a FIFO"):
        open_capture(cap.path).indices("b")
    (cap.path / "manifest.json").unlink()
    os.mkfifo(cap.path / "manifest.json")
    with pytest.raises(CaptureFileError, match="manifest.json: is a FIFO"):
        open_capture(cap.path)


def test_symlinks_out_of_the_capture_are_refused(cap, tmp_path):
    other = write_capture(tmp_path / "other", {1: {"a": np.full((3, 4), 7, np.float32),
                                                   "b": np.zeros(20, np.float32)}},
                          indices={"b": np.arange(20)}, shapes={"b": (40,)})
    step = cap.path / "steps" / "000000001.rank0.safetensors"
    step.unlink()
    step.symlink_to(other.path / "steps" / "000000001.rank0.safetensors")
    c = open_capture(cap.path)
    with pytest.raises(CaptureFileError, match=r"000000001.rank0.safetensors: is a symbolic link \(to .*oth"):
        c.get("a", 1)
    assert not c.check().set_index("file").loc[str(step), "ok"]
    assert [p for p, _ in c.damaged] == [str(step)]
    idx = cap.path / "indices.rank0.safetensors"
    idx.unlink()
    idx.symlink_to(other.path / "indices.rank0.safetensors")
    with pytest.raises(CaptureFileError, match="indices.rank0.safetensors: is a symbolic link"):
        open_capture(cap.path).indices("b")
    (cap.path / "manifest.json").unlink()
    (cap.path / "manifest.json").symlink_to("/etc/passwd")
    with pytest.raises(CaptureFileError, match=r"manifest.json: is a symbolic link \(to /etc/passwd\)"):
        open_capture(cap.path)
    # a steps/ directory linked elsewhere
    link = tmp_path / "linked"
    write_capture(link, {0: {"a": np.ones(2)}})
    os.rename(link / "steps", tmp_path / "elsewhere")
    (link / "steps").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CaptureFileError, match=r"steps: is a symbolic link"):
        open_capture(link)
    with pytest.raises(CaptureFileError, match="steps: is not a directory of this capture"):
        CaptureWriter(link, [_spec()], overwrite=True)


def test_disk_full_gives_a_clear_error_and_leaves_no_temp_files(tmp_path, monkeypatch):
    w = CaptureWriter(tmp_path / "c", [_spec()])
    w.write_step(0, {"grad/w": torch.ones(8)})
    real = store.files._write_safetensors

    def full_disk(filename, tensors, metadata):
        with open(filename, "wb") as f:
            f.write(b"\0" * 100)  # half written when the disk fills
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.files, "_write_safetensors", full_disk)
    with pytest.raises(CaptureWriteError, match=r"000000001.rank0.safetensors: cannot write \(No space") as e:
        w.write_step(1, {"grad/w": torch.ones(8)})
    assert e.value.errno == errno.ENOSPC
    monkeypatch.setattr(store.files, "_write_safetensors", real)

    def full_manifest(path, data):
        Path(path).write_bytes(data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.writer, "_write_bytes", full_manifest)
    with pytest.raises(CaptureWriteError, match="manifest.rank0.json: cannot write"):
        w.finish()
    monkeypatch.undo()
    names = sorted(p.name for p in (tmp_path / "c").rglob("*"))
    assert not [n for n in names if ".tmp-" in n], names
    c = open_capture(tmp_path / "c")
    # the lock was released, the run never finished
    assert c.steps == [0] and c.check().ok.all() and c.status == "interrupted"


def test_every_file_gets_one_mode(cap):
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in cap.path.rglob("*") if p.is_file()}
    assert set(modes.values()) == {file_mode()}, modes
    assert file_mode() == 0o666 & ~_umask()


def _umask():
    old = os.umask(0o022)
    os.umask(old)
    return old


def test_durable_writes_fsync_before_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append(f"replace {Path(b).name}"),
                                                     real_replace(a, b))[1])
    w = CaptureWriter(tmp_path / "c", [_spec()])
    calls.clear()
    w.write_step(0, {"grad/w": torch.ones(8)})
    assert calls == ["fsync", "replace 000000000.rank0.safetensors", "fsync"]  # file, rename, directory
    w.finish()
