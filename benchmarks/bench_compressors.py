"""Compressor overhead vs bandwidth saved: compress + decompress time per method on transformer gradients.

For every operator, on the per-layer gradients of the `stdlib-lm` character transformer (after a
few training steps), measures per step and per worker:
- payload bits (exact wire size) and the entropy-coded size (`coders.compressors.coded`),
- compress time (once per worker) and decompress time (x W for all-gather / vote methods, which
  decode every worker's message; x 1 for all-reduce methods, which decode the sum),
- the communication time of the method's pattern under the alpha-beta network model of
  `analysis.compare.Network` (ring all-reduce 2(W-1)alpha + 2(W-1)/W S/B, ring all-gather
  (W-1)alpha + (W-1) S/B, parameter server 2 alpha + W (S_up + S_down)/B) at 10 and 100 Gbit/s,
- and compares codec + communication with a plain bf16 ring all-reduce of the same gradients.

Run by hand (not a test), e.g.:
    python benchmarks/bench_compressors.py --workers 8
    python benchmarks/bench_compressors.py --workers 8 --d-model 256 --layers 4 --d-ff 1024
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from analysis.compare import Network, comm_time, ring_allreduce_time
from captures import make_workload
from coders.algorithms.signsgd import vote_downlink_bits
from coders.compressors import (
    QSGD,
    Cast,
    Compressor,
    ErrorFeedback,
    Identity,
    LowRank,
    RandomK,
    ScaledSign,
    Sign,
    TopK,
)
from coders.compressors.coded import entropy_coded_bits


def operators() -> list[tuple[str, str, Compressor, str]]:
    """(label, method it stands for, operator, communication pattern)."""
    return [
        ("fp32", "fp32", Identity(), "allreduce"),
        ("fp16", "fp16", Cast("fp16"), "allreduce"),
        ("bf16", "bf16", Cast("bf16"), "allreduce"),
        ("top-k 1% + EF", "topk-ef", ErrorFeedback(TopK(ratio=0.01)), "allgather"),
        ("random-k 1%", "randk", RandomK(ratio=0.01), "allreduce"),
        ("QSGD s=16, B=512", "qsgd", QSGD(16, 512), "allgather"),
        ("QSGD s=4, per layer", "mcm (up)", QSGD(4, None), "ps"),
        ("sign", "signsgd-mv", Sign(), "ps"),
        ("scaled sign + EF", "ef-signsgd", ErrorFeedback(ScaledSign()), "allgather"),
        ("rank-1 power step", "powersgd r=1", LowRank(1), "allreduce"),
        ("rank-4 power step", "powersgd r=4", LowRank(4), "allreduce"),
    ]


def gradients(d_model: int, layers: int, d_ff: int, warmup: int, seed: int) -> list[torch.Tensor]:
    """Per-layer gradients of stdlib-lm after `warmup` optimizer steps."""
    wl = make_workload("stdlib-lm", seed=seed, d_model=d_model, n_layers=layers, d_ff=d_ff)
    for _ in range(warmup):
        wl.step()
    wl.model.zero_grad()
    batch = next(wl.batches(0, 1, seed=seed + 1))
    wl.loss(wl.model, batch).backward()
    return [p.grad.detach().clone() for p in wl.model.parameters()]


def measure(grads: list[torch.Tensor], op: Compressor, repeats: int) -> dict[str, float]:
    """Fastest compress / decompress seconds over `repeats` steps (all layers; the minimum is the least
    disturbed by other load), bits of the last step."""
    states = [{"key": i} for i in range(len(grads))]
    comp, dec = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        payloads = [op.compress(g, s) for g, s in zip(grads, states, strict=True)]
        t1 = time.perf_counter()
        for p in payloads:
            op.decompress(p)
        t2 = time.perf_counter()
        comp.append(t1 - t0)
        dec.append(t2 - t1)
    bits = sum(p.bits for p in payloads)
    coded = sum(entropy_coded_bits(op, p) for p in payloads)
    return {"compress_s": min(comp), "decompress_s": min(dec),
            "bits": float(bits), "coded_bits": float(coded)}


def run(workers: int, bandwidths: list[float], latency_us: float, d_model: int, layers: int, d_ff: int,
        warmup: int, repeats: int, seed: int) -> tuple[pd.DataFrame, int]:
    """One row per operator: bits, codec time, comm time per bandwidth, and the bf16 all-reduce reference."""
    grads = gradients(d_model, layers, d_ff, warmup, seed)
    d = sum(g.numel() for g in grads)
    rows = []
    for label, method, op, pattern in operators():
        m = measure(grads, op, repeats)
        decodes = workers if pattern in ("allgather", "ps") else 1
        codec = m["compress_s"] + decodes * m["decompress_s"]
        # the vote returns as 1 packed bit per entry (odd W) or ternary (even W); else like the up message
        down = vote_downlink_bits(d, workers)[0] if method == "signsgd-mv" else m["bits"]
        row = {"operator": label, "method": method, "pattern": pattern, "bits_up": m["bits"],
               "x_vs_fp32": 32 * d / m["bits"], "coded_bits": m["coded_bits"],
               "compress_ms": 1e3 * m["compress_s"], "decompress_ms": 1e3 * m["decompress_s"],
               "codec_ms": 1e3 * codec}
        for bw in bandwidths:
            net = Network(bandwidth_gbps=bw, latency_us=latency_us)
            comm = comm_time(pattern, m["bits"], down if pattern == "ps" else 0.0, workers, net)
            ref = ring_allreduce_time(16 * d, workers, net)
            row[f"comm_ms@{bw:g}G"] = 1e3 * comm
            row[f"speedup_vs_bf16@{bw:g}G"] = ref / (codec + comm)
        rows.append(row)
        print(f"# {label:22s} {m['bits'] / d:6.3f} bits/entry  codec {1e3 * codec:8.2f} ms", flush=True)
    return pd.DataFrame(rows), d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--bandwidth-gbps", type=float, nargs="+", default=[10.0, 100.0])
    ap.add_argument("--latency-us", type=float, default=5.0)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--d-ff", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    df, d = run(args.workers, args.bandwidth_gbps, args.latency_us, args.d_model, args.layers, args.d_ff,
                args.warmup, args.repeats, args.seed)
    print(f"\nstdlib-lm d_model={args.d_model} layers={args.layers} d_ff={args.d_ff}: d = {d} parameters, "
          f"W = {args.workers}, latency {args.latency_us} us; bf16 ring all-reduce = 16 d bits per worker")
    for bw in args.bandwidth_gbps:
        net = Network(bandwidth_gbps=bw, latency_us=args.latency_us)
        ref = ring_allreduce_time(16 * d, args.workers, net)
        print(f"bf16 all-reduce at {bw:g} Gbit/s: {1e3 * ref:.3f} ms")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
