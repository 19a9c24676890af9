"""Codec time of each method measured in isolation: one worker, one thread, warm, median over steps.

Inside the simulator the W workers are W threads on this machine's cores, so the compress /
decompress timers of a training run mostly measure thread contention. Here one worker runs
`algo.step` alone against a `LoopbackComm` (W identical peers: an all-gather returns W copies of
its own message, a gossip exchange returns what it sent), with torch's intra-op pool at one
thread, after `warmup` discarded steps, and reports the median over `steps` of the algorithm's own
compress / decompress timers (as `benchmarks/bench_algorithms.py` does). The work of decoding W
messages is the same as with real peers; nothing waits for another thread.

Measured on the workload's own parameters and real gradients, and on one synthetic layer per
size in `sizes` (Laplace gradients): the per-entry cost at the largest size is what a model of
P parameters made of such layers pays (`analysis.step_time`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence

import pandas as pd
import torch

# synthetic layers, as matrices (PowerSGD and the low-rank methods need the matrix shape)
LAYER_SHAPES: tuple[tuple[int, int], ...] = ((64, 64), (256, 256), (1024, 1024))
WORKLOAD_LAYER = "workload"


class LoopbackComm:
    """A `Comm` for one worker standing in for W identical ones (no thread, no wait)."""

    def __init__(self, world_size: int):
        if int(world_size) != world_size or world_size < 1:
            raise ValueError(f"world_size must be a positive integer, got {world_size}")
        self.rank, self.world_size = 0, int(world_size)

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        return t * self.world_size

    def all_gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        return [t.clone() for _ in range(self.world_size)]

    def broadcast(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        return t.clone()

    def exchange(self, sends: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        return {peer: t.clone() for peer, t in sends.items()}

    def barrier(self) -> None:
        pass


def _algorithm(method: str, params: list[torch.Tensor], workers: int, options: dict, seed: int,
               topology: str):
    from coders.algorithms.registry import make_algorithm, method_class

    topo = None
    if getattr(method_class(method), "needs_topology", False):
        from coders.runtime.topology import make_topology

        topo = make_topology(topology, workers)
    return make_algorithm(method, params, LoopbackComm(workers), topology=topo, seed=seed, **options)


def _time_steps(method: str, params: list[torch.Tensor], set_grads: Callable[[int], None], workers: int,
                steps: int, warmup: int, options: dict, seed: int, topology: str) -> dict:
    """Median compress / decompress seconds and mean bits of `steps` warm steps of one worker."""
    algo = _algorithm(method, params, workers, options, seed, topology)
    comp, dec, up, down = [], [], [], []
    for i in range(warmup + steps):
        set_grads(i)
        s = algo.step(1e-3)
        if i >= warmup:  # the first steps hold one-off work (allocation, MCM's uncompressed first step)
            comp.append(s.compress_s)
            dec.append(s.decompress_s)
            up.append(s.bits_up)
            down.append(s.bits_down)
    return {"compress_s": statistics.median(comp), "decompress_s": statistics.median(dec),
            "codec_s": statistics.median([a + b for a, b in zip(comp, dec, strict=True)]),
            "bits_up": statistics.fmean(up), "bits_down": statistics.fmean(down)}


def codec_time_workload(method: str, workload: str, workers: int = 4, steps: int = 10, warmup: int = 3,
                        options: dict | None = None, seed: int = 0, topology: str = "ring",
                        device: str = "cpu") -> dict:
    """Isolated codec time of `method` on one worker of `workload` (its real gradients, every step)."""
    from captures import make_workload

    wl = make_workload(workload, seed=seed, device=device)
    model = wl.make_model()
    params = [p for p in model.parameters() if p.requires_grad]
    batches = wl.batches(0, workers, seed=seed)

    def grads(_: int) -> None:
        for p in params:
            p.grad = None
        wl.loss(model, next(batches)).backward()

    out = _time_steps(method, params, grads, workers, steps, warmup, options or {}, seed, topology)
    return {**out, "entries": sum(p.numel() for p in params)}


def codec_time_layer(method: str, shape: Sequence[int], workers: int = 4, steps: int = 10, warmup: int = 3,
                     options: dict | None = None, seed: int = 0, topology: str = "ring",
                     device: str = "cpu") -> dict:
    """Isolated codec time of `method` on one synthetic layer of `shape` (Laplace gradients)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    p = torch.zeros(tuple(shape), device=device, requires_grad=True)

    def laplace() -> torch.Tensor:  # |X| ~ Exp(1) with a random sign, scale 1e-3
        mag = torch.empty(tuple(shape)).exponential_(1.0, generator=g)
        sign = torch.where(torch.rand(tuple(shape), generator=g) < 0.5, -1.0, 1.0)
        return (1e-3 * mag * sign).to(device)

    noise = [laplace(), laplace()]

    def grads(i: int) -> None:
        # two fixed draws, alternated and rescaled: new values every step without sampling cost in the loop
        p.grad = noise[i % 2] * (1.0 + 0.01 * i)

    out = _time_steps(method, [p], grads, workers, steps, warmup, options or {}, seed, topology)
    return {**out, "entries": int(p.numel())}


def codec_table(methods: Iterable[str], workload: str | None, workers: int = 4,
                shapes: Sequence[Sequence[int]] = LAYER_SHAPES, steps: int = 10, warmup: int = 3,
                options: dict[str, dict] | None = None, seed: int = 0, topology: str = "ring",
                device: str = "cpu", threads: int = 1) -> pd.DataFrame:
    """One row per (method, layer): isolated median compress / decompress / codec ms and bits per step.

    `layer` is "workload" (the workload's own parameters) or the synthetic shape "RxC". Columns:
    method, layer, entries, compress_ms, decompress_ms, codec_ms, codec_ns_per_entry, bits_up,
    bits_down, bits_up_per_entry, bits_down_per_entry, threads, steps.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    options = options or {}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    try:
        for m in methods:
            opts = options.get(m, {})
            cases: list[tuple[str, Callable[[], dict]]] = []
            if workload is not None:
                cases.append((WORKLOAD_LAYER, lambda m=m, o=opts: codec_time_workload(
                    m, workload, workers, steps, warmup, o, seed, topology, device)))
            for shape in shapes:
                cases.append(("x".join(map(str, shape)), lambda m=m, o=opts, s=shape: codec_time_layer(
                    m, s, workers, steps, warmup, o, seed, topology, device)))
            for layer, run in cases:
                r = run()
                n = r["entries"]
                rows.append({"method": m, "layer": layer, "entries": n,
                             "compress_ms": 1e3 * r["compress_s"], "decompress_ms": 1e3 * r["decompress_s"],
                             "codec_ms": 1e3 * r["codec_s"], "codec_ns_per_entry": 1e9 * r["codec_s"] / n,
                             "bits_up": r["bits_up"], "bits_down": r["bits_down"],
                             "bits_up_per_entry": r["bits_up"] / n, "bits_down_per_entry": r["bits_down"] / n,
                             "threads": threads, "steps": steps})
    finally:
        torch.set_num_threads(before)
    return pd.DataFrame(rows)
