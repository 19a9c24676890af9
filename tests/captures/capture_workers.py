"""Code that the capture tests run in other processes (spawned gloo ranks, a process to SIGKILL)."""

from __future__ import annotations

import os
import sys

import torch
from torch import nn


def gloo_rank(rank: int, world_size: int, out_dir: str, rendezvous: str) -> None:
    """One rank: local gradients on rank-specific data recorded by GradientRecorder, then all-reduce SGD."""
    import torch.distributed as dist

    from captures import GradientRecorder

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    gen = torch.Generator().manual_seed(100 + rank)
    reference = {}
    with GradientRecorder(model, out_dir, every=2, optimizer=None, what=("grad", "update")) as rec:
        for step in range(5):
            model.zero_grad()
            x, y = torch.randn(8, 6, generator=gen), torch.randn(8, 3, generator=gen)
            nn.functional.mse_loss(model(x), y).backward()
            if rec.recording:
                reference[step] = {n: p.grad.clone() for n, p in model.named_parameters()}
            with torch.no_grad():
                for p in model.parameters():
                    g = p.grad.clone()  # all-reduce a copy: p.grad stays the local gradient
                    dist.all_reduce(g)
                    p -= 0.1 * g / world_size
            rec.step()
    torch.save(reference, os.path.join(out_dir, f"reference.rank{rank}.pt"))

    # DDP with gradient accumulation under no_sync: the recorder sees the accumulated, all-reduced p.grad
    from torch.nn.parallel import DistributedDataParallel

    ddp = DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    reference = {}
    with GradientRecorder(ddp, out_dir + "_ddp", every=1, optimizer=opt):
        for step in range(2):
            opt.zero_grad()
            with ddp.no_sync():
                nn.functional.mse_loss(ddp(torch.randn(8, 6, generator=gen)), torch.zeros(8, 3)).backward()
            nn.functional.mse_loss(ddp(torch.randn(8, 6, generator=gen)), torch.zeros(8, 3)).backward()
            reference[step] = {n.removeprefix("module."): p.grad.clone() for n, p in ddp.named_parameters()}
            opt.step()
    torch.save(reference, os.path.join(out_dir + "_ddp", f"reference.rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def hook_and_fsdp_rank(rank: int, world_size: int, out_dir: str, rendezvous: str) -> None:
    """One rank: a DDP run recorded by CommHookRecorder around torch's fp16 hook, then an FSDP2 run.

    Saves the references next to the captures: each rank's own gradient of a plain (non-DDP) replica on
    the same batch, and for FSDP2 the rank's local gradient shards and the all-rank mean gradient.
    """
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import fp16_compress_hook
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel

    from captures import GradientRecorder
    from captures.recorder import CommHookRecorder

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)

    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))

    gen = torch.Generator().manual_seed(100 + rank)
    model = make()
    ddp = DistributedDataParallel(model)
    replica = make()
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    rec = CommHookRecorder(ddp, os.path.join(out_dir, "hook"), every=2)
    ddp.register_comm_hook(None, rec.wrap(fp16_compress_hook))
    local, averaged = {}, {}
    for step in range(3):
        x, y = torch.randn(8, 6, generator=gen), torch.randn(8, 3, generator=gen)
        replica.load_state_dict(model.state_dict())
        replica.zero_grad()
        nn.functional.mse_loss(replica(x), y).backward()
        local[step] = {n: p.grad.clone() for n, p in replica.named_parameters()}
        opt.zero_grad()
        nn.functional.mse_loss(ddp(x), y).backward()
        averaged[step] = {n.removeprefix("module."): p.grad.clone() for n, p in ddp.named_parameters()}
        opt.step()
    rec.close()
    torch.save({"local": local, "averaged": averaged}, os.path.join(out_dir, f"hook_ref.rank{rank}.pt"))

    # FSDP2: uneven Shard(0) pieces (5 rows over 2 ranks: 3 + 2)
    model = make()
    plain = make()
    fully_shard(model[0])
    fully_shard(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    shards, means = {}, {}
    with GradientRecorder(model, os.path.join(out_dir, "fsdp"), what=("grad", "update")):
        for step in range(2):
            x, y = torch.randn(8, 6, generator=gen), torch.randn(8, 3, generator=gen)
            plain.load_state_dict({k: v.full_tensor() for k, v in model.state_dict().items()})
            plain.zero_grad()
            nn.functional.mse_loss(plain(x), y).backward()
            means[step] = {}
            for n, p in plain.named_parameters():
                g = p.grad.clone()
                dist.all_reduce(g)
                means[step][n] = g / world_size
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            shards[step] = {n: p.grad.to_local().clone() for n, p in model.named_parameters()}
            opt.step()
    torch.save({"shards": shards, "means": means}, os.path.join(out_dir, f"fsdp_ref.rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def record_forever(out_dir: str) -> None:
    """Record every step of a 1M-entry parameter forever; the gradient of step t is (t + 1) everywhere."""
    from captures import GradientRecorder

    model = nn.Module()
    model.w = nn.Parameter(torch.zeros(1024, 1024))
    rec = GradientRecorder(model, out_dir, every=1, optimizer=None, queue_size=2)
    t = 0
    while True:
        model.w.grad = None
        (model.w * float(t + 1)).sum().backward()
        rec.step()
        t += 1


def write_run(out_dir: str, tag: float, steps: int = 40) -> int:
    """Write ``steps`` steps of values all ``tag``; exit status 3 if another writer holds the rank."""
    import time

    from captures.store import CaptureBusyError, CaptureWriter, LayerSpec

    go = os.path.join(os.path.dirname(out_dir), "go")
    open(os.path.join(os.path.dirname(out_dir), f"ready{tag:g}"), "w").close()
    while not os.path.exists(go):  # both writers start together
        time.sleep(0.001)
    try:
        writer = CaptureWriter(out_dir, [LayerSpec("w", (256,), "float32", "float32")], model=f"run{tag}",
                               overwrite=True)
    except CaptureBusyError as e:
        print(e, file=sys.stderr)
        return 3
    for step in range(steps):
        writer.write_step(step, {"grad/w": torch.full((256,), float(tag))})
        time.sleep(0.005)
    writer.finish()
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "write-run":
        sys.exit(write_run(sys.argv[2], float(sys.argv[3])))
    record_forever(sys.argv[1])
