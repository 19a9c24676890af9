"""Training step time with gradient capture off vs on (full, sampled, summary-only) on stdlib-lm.

Usage (from the repository root)::

    python benchmarks/bench_capture.py [--steps 40] [--rounds 3] [--every 1] [--d-model 256] [--device cpu]

Each round times ``--steps`` optimizer steps of every mode in turn on the same model (the modes are
interleaved so that a change in machine load hits all of them alike); the figure reported is the
median over rounds of the mean step time. ``--every 1`` records every step (the worst case);
``ratio`` is step time / step time with capture off. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from captures import GradientRecorder, make_workload  # noqa: E402

MODES = {
    "off": None,
    "full": {},
    "sampled 1e5/layer": {"sample": 100_000},
    "summary-only": {"summary_only": True},
}


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.safetensors"))


def run(args: argparse.Namespace) -> list[dict]:
    wl = make_workload("stdlib-lm", seed=0, device=args.device, d_model=args.d_model, n_heads=8,
                       n_layers=args.layers, d_ff=4 * args.d_model, seq_len=args.seq_len)
    sync = torch.cuda.synchronize if wl.device.type == "cuda" else (lambda: None)
    for _ in range(5):  # warm-up
        wl.step()
    times: dict[str, list[float]] = {m: [] for m in MODES}
    written: dict[str, list[float]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for rnd in range(args.rounds):
            for mode, kwargs in MODES.items():
                out = Path(tmp) / f"{mode.replace(' ', '_').replace('/', '_')}_{rnd}"
                rec = None
                if kwargs is not None:
                    rec = GradientRecorder(wl.model, out, every=args.every, optimizer=wl.optimizer,
                                           model_name="stdlib-lm", **kwargs)
                sync()
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    wl.step()
                if rec is not None:
                    rec.close()  # includes draining the writer: the cost of writing is counted
                sync()
                times[mode].append((time.perf_counter() - t0) / args.steps)
                if rec is not None:
                    written[mode].append(_dir_bytes(out) / max(len(rec.steps_recorded), 1))
    base = statistics.median(times["off"])
    rows = []
    for mode in MODES:
        t = statistics.median(times[mode])
        rows.append({"mode": mode, "ms_per_step": 1e3 * t, "ratio": t / base,
                     "MB_per_record": statistics.median(written[mode]) / 1e6 if written[mode] else 0.0})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--every", type=int, default=1)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--tmp", default=None, help="directory for the captures (default: system temp)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    wl = make_workload("stdlib-lm", d_model=args.d_model, n_heads=8, n_layers=args.layers,
                       d_ff=4 * args.d_model, seq_len=args.seq_len)
    big = sum(p.numel() > 100_000 for p in wl.model.parameters())
    print(f"stdlib-lm d_model={args.d_model} layers={args.layers}: {wl.n_params() / 1e6:.2f}M params, "
          f"{big} tensors > 1e5 entries; device {args.device}, torch threads {torch.get_num_threads()}, "
          f"every={args.every}, {args.steps} steps x {args.rounds} rounds, load avg {os.getloadavg()[0]:.1f}")
    rows = run(args)
    print("| capture | ms / step | ratio to off | MB written / record |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['ms_per_step']:.1f} | {r['ratio']:.3f} | {r['MB_per_record']:.2f} |")


if __name__ == "__main__":
    main()
