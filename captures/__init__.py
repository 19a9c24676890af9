"""captures: record per-layer gradients from real training to an on-disk capture (stage 1)."""
