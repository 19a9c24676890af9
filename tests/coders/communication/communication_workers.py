"""Module-level worker functions for the torch.distributed Comm tests (spawned processes import them)."""

from __future__ import annotations

import torch


def collectives(comm) -> dict:
    """Exercise every Comm verb with rank-dependent inputs; return what this rank saw."""
    r, w = comm.rank, comm.world_size
    out = {}
    out["sum"] = comm.all_reduce(torch.arange(5, dtype=torch.float32) * (r + 1))
    out["sum_bf16"] = comm.all_reduce(torch.full((3,), 0.5 * (r + 1), dtype=torch.bfloat16))
    out["gather"] = comm.all_gather(torch.arange(r + 1, dtype=torch.int64).reshape(1, r + 1) + 10 * r)
    out["gather_bool"] = comm.all_gather(torch.tensor([r % 2 == 0, True]))
    out["gather_empty"] = comm.all_gather(torch.zeros(0 if r == 0 else 2))
    out["bcast"] = comm.broadcast(torch.full((2, 2), float(r)), src=w - 1)
    ring = {(r + 1) % w: torch.full((3,), float(r)), (r - 1) % w: torch.full((3,), float(-r))}
    out["exchange"] = comm.exchange(ring)
    comm.barrier()
    return out
