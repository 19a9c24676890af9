"""captures: record per-layer gradients from real training to an on-disk capture (stage 1).

Record while training, then read lazily::

    from captures import GradientRecorder, make_workload, open_capture

    wl = make_workload("digits-cnn", seed=0)
    with GradientRecorder(wl.model, "runs/x/capture", every=25, sample=100_000, optimizer=wl.optimizer):
        for _ in range(300):
            wl.step()
    cap = open_capture("runs/x/capture")
    for step, layer, values in cap:        # rank 0, kind "grad", one tensor at a time
        ...

Each worker's gradient before DDP's all-reduce, around any comm hook::

    rec = CommHookRecorder(ddp_model, "runs/x/capture", every=25)
    ddp_model.register_comm_hook(state, rec.wrap(powerSGD_hook))   # default: torch's allreduce_hook
    ...                                                              # train as usual
    rec.close()

Check a capture (the CLI exits non-zero when ``not table.ok.all()``)::

    cap = open_capture(path)
    is_capture_dir(path)  # a manifest is there (resolve_capture_dir(run_dir) finds <run>/capture)
    cap.status          # complete | recording | interrupted | aborted | damaged
    cap.damaged         # [(path, reason), ...] from the file headers
    table = cap.check() # every file, every CRC-32; check(repair=True) removes dead writers' temp files

Make a capture from arrays (test fixtures, synthetic data)::

    from captures import write_capture
    cap = write_capture(path, {step: {"fc.weight": array, ...}, ...})
"""

from captures.recorder import CommHookRecorder, GradientRecorder, recording_comm_hook
from captures.store import (
    Capture,
    CaptureBusyError,
    CaptureFileError,
    CaptureRecord,
    CaptureWriteError,
    CaptureWriter,
    is_capture_dir,
    open_capture,
    resolve_capture_dir,
    write_capture,
)
from captures.workloads import WORKLOADS, Workload, capture_workload, make_workload

__all__ = [
    "WORKLOADS",
    "Capture",
    "CaptureBusyError",
    "CaptureFileError",
    "CaptureRecord",
    "CaptureWriteError",
    "CaptureWriter",
    "CommHookRecorder",
    "GradientRecorder",
    "Workload",
    "capture_workload",
    "is_capture_dir",
    "make_workload",
    "open_capture",
    "recording_comm_hook",
    "resolve_capture_dir",
    "write_capture",
]
