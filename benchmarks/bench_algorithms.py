"""Codec time of one worker's step: S3GD-MV, MCM, Rand-MCM, random-k, QSGD and coded-sgd's variants.

One worker of W runs `algo.step` on digits-cnn gradients with a loopback `Comm` whose
all-gather returns W copies of its own message (the work of decoding W messages is the
same; nothing waits for other threads). Reports medians over steps of the algorithm's own
compress / decompress timers, the codec minimum (the least disturbed step on a loaded
machine) and the CPU time of the whole `algo.step` (process time: robust to other load), with
torch's intra-op pool at `--threads` (default 1, as in the simulator, which runs its W worker
threads with max(1, cores // W) intra-op threads).
Run by hand:
    python benchmarks/bench_algorithms.py --workers 4 --steps 60
    python benchmarks/bench_algorithms.py --only coded-sgd,qsgd     # a subset of the methods
coded-sgd's compress time is quantize + model fit + encode of the whole flat gradient, its
decompress time the W decodes and the average (W copies of its own message here).
"""

from __future__ import annotations

import argparse
import statistics
import time

import pandas as pd
import torch

from captures import make_workload
from coders.algorithms.registry import make_algorithm


class LoopbackComm:
    """A `Comm` for one worker standing in for W identical ones."""

    def __init__(self, world_size: int):
        self.rank, self.world_size = 0, world_size

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        return t * self.world_size

    def all_gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        return [t.clone() for _ in range(self.world_size)]

    def broadcast(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        return t.clone()

    def barrier(self) -> None:
        pass


def bench(method: str, options: dict, workers: int, steps: int) -> dict:
    """Median compress / decompress milliseconds per step of one worker."""
    wl = make_workload("digits-cnn", seed=0)
    model = wl.make_model()
    params = list(model.parameters())
    algo = make_algorithm(method, params, LoopbackComm(workers), **options)
    batches = wl.batches(0, workers)
    comp, dec, cpu = [], [], []
    for _ in range(steps):
        for p in params:
            p.grad = None
        wl.loss(model, next(batches)).backward()
        tic = time.process_time()
        s = algo.step(0.01)
        cpu.append(time.process_time() - tic)
        comp.append(s.compress_s)
        dec.append(s.decompress_s)
    # the first steps hold one-off work (MCM's uncompressed step 1)
    comp, dec, cpu = comp[3:], dec[3:], cpu[3:]
    return {"method": method, "options": options, "compress_ms": 1e3 * statistics.median(comp),
            "decompress_ms": 1e3 * statistics.median(dec),
            "codec_ms": 1e3 * statistics.median([a + b for a, b in zip(comp, dec, strict=True)]),
            "codec_min_ms": 1e3 * min(a + b for a, b in zip(comp, dec, strict=True)),
            "step_cpu_ms": 1e3 * statistics.median(cpu)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default=None, help="comma-separated method names to run (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cases = [("s3gd-mv", {}), ("mcm", {}), ("mcm", {"levels": 4}), ("rand-mcm", {}),
             ("randk", {"ratio": 0.01}), ("qsgd", {}),
             ("coded-sgd", {}), ("coded-sgd", {"coder": "huffman"}), ("coded-sgd", {"model": "histogram"}),
             ("coded-sgd", {"refresh": "once"}), ("coded-sgd", {"quantizer": "qsgd"})]
    if args.only:
        keep = set(args.only.split(","))
        cases = [c for c in cases if c[0] in keep]
    rows = [bench(m, o, args.workers, args.steps) for m, o in cases]
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
