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

Make a capture from arrays (test fixtures, synthetic data)::

    from captures import write_capture
    cap = write_capture(path, {step: {"fc.weight": array, ...}, ...})
"""

from captures.recorder import GradientRecorder
from captures.store import (
    Capture,
    CaptureBusyError,
    CaptureFileError,
    CaptureRecord,
    CaptureWriteError,
    CaptureWriter,
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
    "GradientRecorder",
    "Workload",
    "capture_workload",
    "make_workload",
    "open_capture",
    "resolve_capture_dir",
    "write_capture",
]
