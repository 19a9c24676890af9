"""Module-level worker functions for the torch.distributed tests (spawned processes import them)."""

from __future__ import annotations

import torch


def train_many(comm, specs) -> list:
    """Several training runs one after the other in one process group (saves process launches)."""
    from coders.runtime.train import train_worker

    return [train_worker(comm, spec) for spec in specs]


def ddp_hooks_compare(comm, steps: int = 6) -> dict:
    """Train the same small DDP model with several hooks; return the final flat parameters of each."""
    import torch.distributed as dist
    from torch import nn
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as torch_psgd
    from torch.nn.parallel import DistributedDataParallel as DDP

    from coders.compressors import Cast, TopK
    from coders.runtime import ddp_hooks

    def run(register) -> torch.Tensor:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 3))
        ddp = DDP(model)
        register(ddp)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
        g = torch.Generator().manual_seed(100 + comm.rank)
        for _ in range(steps):
            x = torch.randn(16, 12, generator=g)
            y = torch.randint(0, 3, (16,), generator=g)
            opt.zero_grad()
            nn.functional.cross_entropy(ddp(x), y).backward()
            opt.step()
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    out = {}
    for rank in (1, 2):
        out[f"torch_psgd{rank}"] = run(lambda d, r=rank: d.register_comm_hook(
            torch_psgd.PowerSGDState(None, matrix_approximation_rank=r, start_powerSGD_iter=2,
                                     min_compression_rate=1.0), torch_psgd.powerSGD_hook))
        out[f"ours_psgd{rank}"] = run(lambda d, r=rank: d.register_comm_hook(
            ddp_hooks.PowerSGDHookState(None, matrix_approximation_rank=r, start_powerSGD_iter=2,
                                        min_compression_rate=1.0), ddp_hooks.powersgd_hook))
    out["torch_fp16"] = run(lambda d: d.register_comm_hook(None, default_hooks.fp16_compress_hook))
    out["ours_fp16"] = run(lambda d: d.register_comm_hook(ddp_hooks.CompressorHookState(Cast("fp16")),
                                                          ddp_hooks.compressor_hook))
    out["plain"] = run(lambda d: None)
    topk = ddp_hooks.CompressorHookState(TopK(ratio=0.1), error_feedback=True)
    out["ours_topk_ef"] = run(lambda d: d.register_comm_hook(topk, ddp_hooks.compressor_hook))
    out["topk_bits"] = topk.bits_up
    vote = ddp_hooks.SignVoteHookState(beta=0.0)
    out["ours_vote"] = run(lambda d: d.register_comm_hook(vote, ddp_hooks.sign_vote_hook))
    dist.barrier()
    return out


def coded_sgd_synthetic(comm, options: dict | list, steps: int = 3) -> dict | list:
    """coded-sgd on fixed per-rank synthetic gradients: x_hat, decoded vectors, bits, final params.

    A list of option dicts runs each in turn (one process launch for all)."""
    if isinstance(options, list):
        return [coded_sgd_synthetic(comm, o, steps) for o in options]
    from coders.algorithms.registry import make_algorithm

    # a generator of its own: the simulator's workers are threads, and torch's global RNG is shared
    init = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(40, 30, generator=init)),
              torch.nn.Parameter(torch.randn(30, generator=init))]
    algo = make_algorithm("coded-sgd", params, comm, **options)
    g = torch.Generator().manual_seed(1000 + comm.rank)
    out = {"sent": [], "x_hat": [], "decoded": [], "bits_up": []}
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g) * torch.rand(p.shape, generator=g) ** 3
        stats = algo.step(0.1)
        out["x_hat"].append(algo.x_hat.clone())
        out["decoded"].append([d.clone() for d in algo.decoded])
        out["bits_up"].append(stats.bits_up)
    out["params"] = torch.cat([p.detach().reshape(-1) for p in params])
    return out


def coded_hook_vs_method(comm, options: dict | list, steps: int = 5) -> dict | list:
    """The same small model trained by DDP + coded_hook and by the coded-sgd method: final flat params.

    A list of option dicts runs each in turn (one process launch for all)."""
    if isinstance(options, list):
        return [coded_hook_vs_method(comm, o, steps) for o in options]
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel as DDP

    from coders.algorithms.registry import make_algorithm
    from coders.runtime import ddp_hooks

    def model() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 3))

    def batches():
        g = torch.Generator().manual_seed(100 + comm.rank)
        for _ in range(steps):
            yield torch.randn(16, 12, generator=g), torch.randint(0, 3, (16,), generator=g)

    ddp_model = model()
    ddp = DDP(ddp_model)
    state = ddp_hooks.CodedHookState(params=list(ddp_model.parameters()), **options)
    ddp.register_comm_hook(state, ddp_hooks.coded_hook)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    for x, y in batches():
        opt.zero_grad()
        nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()

    plain = model()
    algo = make_algorithm("coded-sgd", list(plain.parameters()), comm, **options)
    bits = 0.0
    for x, y in batches():
        for p in plain.parameters():
            p.grad = None
        nn.functional.cross_entropy(plain(x), y).backward()
        bits += algo.step(0.1).bits_up
    flat = lambda m: torch.cat([p.detach().reshape(-1) for p in m.parameters()])  # noqa: E731
    return {"hook": flat(ddp_model), "method": flat(plain), "hook_bits": state.bits_up, "method_bits": bits}
