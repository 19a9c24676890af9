"""FSDP2 (DTensor) parameters: this rank's local piece and where it sits in the whole parameter."""

from __future__ import annotations

from typing import Any

from torch import Tensor


def _local(t: Tensor) -> Tensor:
    """The local piece of a DTensor (FSDP2 shard); any other tensor as is."""
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) and hasattr(t, "placements") else t


def _shard_of(p: Tensor) -> dict[str, Any] | None:
    """Where this rank's piece of a DTensor parameter sits in the whole: shapes, offset, placements."""
    if not hasattr(p, "placements") or not hasattr(p, "device_mesh"):
        return None
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    local_shape, offset = compute_local_shape_and_global_offset(p.shape, p.device_mesh, p.placements)
    return {"global_shape": list(p.shape), "local_shape": list(local_shape), "global_offset": list(offset),
            "placements": [repr(pl) for pl in p.placements], "mesh_shape": list(p.device_mesh.shape)}
