"""Training step time with gradient capture off vs on (full, sampled, summary-only) on stdlib-lm.

Usage (from the repository root)::

    python benchmarks/bench_capture.py [--steps 40] [--rounds 3] [--every 1] [--d-model 256] [--device cpu]

Each round times ``--steps`` optimizer steps of every mode in turn on the same model (the modes are
interleaved so that a change in machine load hits all of them alike); the figure reported is the
median over rounds of the mean step time, as wall-clock time and as CPU time of the whole process
(all threads, so the writer thread's work is counted; CPU time is the steadier figure on a shared
machine). ``--every 1`` records every step (the worst case); a ratio is step time / step time with
capture off. ``full, no fsync`` is ``durable=False`` (no fsync before each step file's rename): the
difference to ``full`` is what durability costs. Prints a markdown table.
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
from captures.summary import layer_summary  # noqa: E402

MODES = {
    "off": None,
    "full": {},
    "full, no fsync": {"durable": False},
    "sampled 1e5/layer": {"sample": 100_000},
    "summary-only": {"summary_only": True},
}


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path / "steps").glob("*.safetensors"))


def run(args: argparse.Namespace) -> list[dict]:
    wl = make_workload("stdlib-lm", seed=0, device=args.device, d_model=args.d_model, n_heads=8,
                       n_layers=args.layers, d_ff=4 * args.d_model, seq_len=args.seq_len)
    sync = torch.cuda.synchronize if wl.device.type == "cuda" else (lambda: None)
    for _ in range(5):  # warm-up
        wl.step()
    times: dict[str, list[float]] = {m: [] for m in MODES}
    cpu: dict[str, list[float]] = {m: [] for m in MODES}
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
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(args.steps):
                    wl.step()
                if rec is not None:
                    rec.close()  # includes draining the writer: the cost of writing is counted
                sync()
                times[mode].append((time.perf_counter() - t0) / args.steps)
                cpu[mode].append((time.process_time() - c0) / args.steps)
                if rec is not None:
                    written[mode].append(_dir_bytes(out) / max(len(rec.steps_recorded), 1))
    base = statistics.median(times["off"])
    cpu_base = statistics.median(cpu["off"])
    rows = []
    for mode in MODES:
        t = statistics.median(times[mode])
        c = statistics.median(cpu[mode])
        rows.append({"mode": mode, "ms_per_step": 1e3 * t, "ratio": t / base,
                     "cpu_ms_per_step": 1e3 * c, "cpu_ratio": c / cpu_base,
                     "MB_per_record": statistics.median(written[mode]) / 1e6 if written[mode] else 0.0})
    return rows


def per_record_costs(args: argparse.Namespace, records: int = 10) -> list[dict]:
    """Cost of recording one step, measured directly: ``recorder.step()`` on fixed gradients.

    ``main_ms``: time the training thread spends per recorded step (sampling / moments / copies to
    host buffers; what training waits for), with records ``--gap`` seconds apart as training steps
    would space them. ``write_ms``: the rest of the wall time per record until ``close()`` returns
    (the writer thread's reductions, serialisation and disk write not hidden behind the gaps).
    """
    wl = make_workload("stdlib-lm", seed=0, device=args.device, d_model=args.d_model, n_heads=8,
                       n_layers=args.layers, d_ff=4 * args.d_model, seq_len=args.seq_len)
    sync = torch.cuda.synchronize if wl.device.type == "cuda" else (lambda: None)
    for _ in range(3):
        wl.step()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for mode, kwargs in MODES.items():
            if kwargs is None:
                continue
            main_s: list[float] = []
            drain_s: list[float] = []
            for rnd in range(args.rounds):
                out = Path(tmp) / f"direct_{len(rows)}_{rnd}"
                rec = GradientRecorder(wl.model, out, every=1, optimizer=None, **kwargs)
                sync()
                t_start = time.perf_counter()
                spent = 0.0
                for _ in range(records):
                    t0 = time.perf_counter()
                    rec.step()
                    sync()
                    spent += time.perf_counter() - t0
                    time.sleep(args.gap)  # records are spaced by training steps, during which the writer runs
                rec.close()
                drain_s.append((time.perf_counter() - t_start - records * args.gap) / records)
                main_s.append(spent / records)
            rows.append({"mode": mode, "main_ms": 1e3 * statistics.median(main_s),
                         "write_ms": 1e3 * statistics.median(drain_s)})
    return rows


def summary_cost(args: argparse.Namespace, reps: int = 7) -> dict:
    """CPU time of the summary-only reductions of one record: ``layer_summary`` of every gradient.

    On the CPU the recorder runs these in its writer thread; here they run alone in this thread
    (best of ``reps``), which is the cost that shows as extra CPU per recorded step.
    """
    wl = make_workload("stdlib-lm", seed=0, device=args.device, d_model=args.d_model, n_heads=8,
                       n_layers=args.layers, d_ff=4 * args.d_model, seq_len=args.seq_len)
    wl.step()
    grads = [p.grad.detach().clone() for p in wl.model.parameters() if p.grad is not None]
    sync = torch.cuda.synchronize if wl.device.type == "cuda" else (lambda: None)
    best = float("inf")
    for _ in range(reps):
        sync()
        c0 = time.process_time()
        for g in grads:
            layer_summary(g, 64)
        sync()
        best = min(best, time.process_time() - c0)
    return {"entries": sum(g.numel() for g in grads), "layers": len(grads), "cpu_ms": 1e3 * best}


def write_costs(args: argparse.Namespace, reps: int = 15) -> list[dict]:
    """CPU and wall ms to write one "full" record of the bench model (54 tensors, 12.9 MB), median of
    ``reps``: safetensors' ``save_file`` (the old writer) against the store's atomic write with its
    CRC-32s, with and without fsync; and the CRC-32s alone."""
    from safetensors.torch import save_file

    from captures.store import _atomic_save_tensors, tensor_crc32

    wl = make_workload("stdlib-lm", seed=0, device="cpu", d_model=args.d_model, n_heads=8,
                       n_layers=args.layers, d_ff=4 * args.d_model, seq_len=args.seq_len)
    tensors = {f"grad/{n}": torch.randn(p.shape) for n, p in wl.model.named_parameters()}
    cases = {
        "safetensors save_file": lambda d, i: save_file(tensors, str(d / f"a{i}"), metadata={"k": "v"}),
        "store, CRC-32 + fsync": lambda d, i: _atomic_save_tensors(d / f"b{i}", tensors, {"k": "v"}, True),
        "store, CRC-32, no fsync": lambda d, i: _atomic_save_tensors(d / f"c{i}", tensors, {"k": "v"}, False),
        "CRC-32 alone": lambda d, i: [tensor_crc32(t) for t in tensors.values()],
    }
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        d = Path(tmp)
        for name, write in cases.items():
            cpu_s, wall_s = [], []
            for i in range(reps):
                c0, t0 = time.process_time(), time.perf_counter()
                write(d, i)
                cpu_s.append(time.process_time() - c0)
                wall_s.append(time.perf_counter() - t0)
            rows.append({"case": name, "cpu_ms": 1e3 * statistics.median(cpu_s),
                         "wall_ms": 1e3 * statistics.median(wall_s)})
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
    p.add_argument("--keep-denormals", action="store_true", help="do not flush float32 denormals to zero")
    p.add_argument("--write-only", action="store_true", help="only the cost of writing one record")
    p.add_argument("--gap", type=float, default=0.2,
                   help="seconds between records in the per-record measurement (about one training step)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # AdamW's second-moment state underflows into float32 denormals within ~60 steps; on the CPU that
    # makes every later step ~1.5x slower, a drift that would swamp the differences measured here.
    torch.set_flush_denormal(not args.keep_denormals)
    wl = make_workload("stdlib-lm", d_model=args.d_model, n_heads=8, n_layers=args.layers,
                       d_ff=4 * args.d_model, seq_len=args.seq_len)
    big = sum(p.numel() > 100_000 for p in wl.model.parameters())
    print(f"stdlib-lm d_model={args.d_model} layers={args.layers}: {wl.n_params() / 1e6:.2f}M params, "
          f"{big} tensors > 1e5 entries; device {args.device}, torch threads {torch.get_num_threads()}, "
          f"every={args.every}, {args.steps} steps x {args.rounds} rounds, flush denormals "
          f"{not args.keep_denormals}, load avg {os.getloadavg()[0]:.1f}")
    if args.write_only:
        for r in write_costs(args):
            print(f"| {r['case']} | {r['cpu_ms']:.1f} | {r['wall_ms']:.1f} |")
        return
    rows = run(args)
    print("| capture | wall ms / step | wall ratio | CPU ms / step | CPU ratio | MB written / record |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['ms_per_step']:.1f} | {r['ratio']:.3f} | {r['cpu_ms_per_step']:.1f} | "
              f"{r['cpu_ratio']:.3f} | {r['MB_per_record']:.2f} |")
    step_ms = rows[0]["ms_per_step"]
    print()
    print(f"Cost of one recorded step, measured directly (step time with capture off: {step_ms:.1f} ms):")
    print("| capture | training-thread ms / record | % of a step | wall ms / record not hidden |")
    print("|---|---:|---:|---:|")
    for r in per_record_costs(args):
        print(f"| {r['mode']} | {r['main_ms']:.1f} | {100 * r['main_ms'] / step_ms:.1f} | "
              f"{r['write_ms']:.1f} |")
    print()
    print("Writing one full record (12.9 MB at the defaults), median of 15:")
    print("| writer | CPU ms | wall ms |")
    print("|---|---:|---:|")
    for r in write_costs(args):
        print(f"| {r['case']} | {r['cpu_ms']:.1f} | {r['wall_ms']:.1f} |")
    sc = summary_cost(args)
    print()
    print(f"summary-only reductions of one record (layer_summary, 64 bins, {sc['layers']} layers, "
          f"{sc['entries'] / 1e6:.2f}M entries, one thread): {sc['cpu_ms']:.1f} ms CPU")


if __name__ == "__main__":
    main()
