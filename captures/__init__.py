"""captures: record per-layer gradients from real training to an on-disk capture (stage 1)."""

from captures.recorder import GradientRecorder
from captures.store import (
    Capture,
    CaptureFileError,
    CaptureRecord,
    CaptureWriter,
    open_capture,
    write_capture,
)
from captures.workloads import WORKLOADS, Workload, capture_workload, make_workload

__all__ = [
    "WORKLOADS",
    "Capture",
    "CaptureFileError",
    "CaptureRecord",
    "CaptureWriter",
    "GradientRecorder",
    "Workload",
    "capture_workload",
    "make_workload",
    "open_capture",
    "write_capture",
]
