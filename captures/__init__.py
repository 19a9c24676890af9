"""captures: record per-layer gradients from real training to an on-disk capture (stage 1)."""

from captures.workloads import WORKLOADS, Workload, make_workload

__all__ = ["WORKLOADS", "Workload", "make_workload"]
