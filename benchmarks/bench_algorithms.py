"""Codec time of one worker's step for the parameter-server methods (S3GD-MV, MCM, Rand-MCM, random-k).

One worker of W runs `algo.step` on digits-cnn gradients with a loopback `Comm` whose
all-gather returns W copies of its own message (the work of decoding W messages is the
same; nothing waits for other threads). Reports medians over steps of the algorithm's own
compress / decompress timers, and the codec minimum (the least disturbed step on a loaded
machine), with torch's intra-op pool at `--threads` (default 1, as in the simulator, which
runs its W worker threads with max(1, cores // W) intra-op threads).
Run by hand:
    python benchmarks/bench_algorithms.py --workers 4 --steps 60
"""

from __future__ import annotations

import argparse
import statistics

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
    comp, dec = [], []
    for _ in range(steps):
        for p in params:
            p.grad = None
        wl.loss(model, next(batches)).backward()
        s = algo.step(0.01)
        comp.append(s.compress_s)
        dec.append(s.decompress_s)
    comp, dec = comp[3:], dec[3:]  # the first steps hold one-off work (MCM's uncompressed step 1)
    return {"method": method, "options": options, "compress_ms": 1e3 * statistics.median(comp),
            "decompress_ms": 1e3 * statistics.median(dec),
            "codec_ms": 1e3 * statistics.median([a + b for a, b in zip(comp, dec, strict=True)]),
            "codec_min_ms": 1e3 * min(a + b for a, b in zip(comp, dec, strict=True))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cases = [("s3gd-mv", {}), ("mcm", {}), ("mcm", {"levels": 4}), ("rand-mcm", {}),
             ("randk", {"ratio": 0.01})]
    rows = [bench(m, o, args.workers, args.steps) for m, o in cases]
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
