"""Whole-capture stages at real-model size, as ratios to the time it takes to read the capture.

Usage (from the repository root)::

    python benchmarks/bench_pipeline.py [--capture workload|synthetic] [--d-model 512] [--layers 4]
        [--steps 2] [--jobs 2] [--loc fit] [--max-n 200000] [--device cpu] [--skip-single] [--out DIR]

One function per stage, so that later stages (e.g. `code_capture`) can be added beside `bench_fit`:

- `build_capture`: ``workload`` trains the built-in ``stdlib-lm`` transformer enlarged to
  d_model=512, 4 blocks, d_ff=2048 (12.7M parameters) for ``--steps`` optimizer steps and records
  every one of them in full (`captures.capture_workload`); ``synthetic`` writes the capture of
  issue 13 with `captures.write_capture`: 2 steps x 4 layers x 1M float32 GenNorm(0.8) entries,
  every other layer with 20 % exact zeros; ``resnet18`` writes ``--steps`` steps of synthetic
  gradients shaped like torchvision's ResNet-18 (62 tensors, 11.7M parameters; conv / fc weights
  GenNorm(0.8), fc bias and batch-norm parameters Normal, scales varying by layer), the capture of
  issue 13's "ResNet-18-sized" goal without training one.
- `bench_read`: read every record (`Capture.get`) and sum |x|: the unit of every ratio.
- `bench_fit`: `gradstats.fit_capture` with all goodness columns, each of normal, laplace,
  gennorm, zi-gennorm alone (serial) and the four together, serially (``jobs=1``) and with
  ``--jobs`` worker processes; the parallel table is checked equal to the serial one.
- `bench_code` (``--code``): `coders.report.code_capture` with its defaults: ``verify=True``,
  ``verify="sample"`` and ``verify=False`` serially, ``verify="sample"`` with ``--jobs`` processes,
  each default coder alone (ans, huffman), and with ``--device cuda`` quantized on the device (bits
  checked close to the host run's).

Times are wall-clock seconds (best of ``--repeat``) and CPU seconds of the process and its worker
processes; on a shared machine the CPU figure and the ratios measured in the same run are the ones
to quote. Prints a markdown table. The serial runs (``jobs=1``) hold torch and BLAS to one thread
(`captures.engine.one_thread`), so ``jobs=N`` is compared with one core. Pooled rows add:

- ``speedup``: the serial row's wall seconds / this row's (the issue's ">= 1.7x" on an idle machine);
- ``critical_s``: the wall time an idle machine of ``jobs`` cores needs at the CPU seconds this run's
  workers and parent used (`captures.engine.EngineRun.critical_path_s`: max(busiest worker, all
  CPU / jobs); the least over ``--repeat``); ``speedup_critical`` = serial CPU seconds /
  ``critical_s``, the speed-up a shared machine can still measure; ``pool_cpu`` = pool CPU / serial
  CPU (the pool's overhead, and the slow-down of two processes sharing caches and memory).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from captures import capture_workload, open_capture, write_capture  # noqa: E402
from gradstats import fit_capture  # noqa: E402

FAMILIES = ("normal", "laplace", "gennorm", "zi-gennorm")


def resnet18_shapes(n_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """The parameter shapes of torchvision's resnet18 (BasicBlock, [2, 2, 2, 2]), in its order."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7), "bn1.weight": (64,),
                                          "bn1.bias": (64,)}
    c_in = 64
    for i, c in enumerate((64, 128, 256, 512), start=1):
        for b in range(2):
            pre = f"layer{i}.{b}"
            first_in = c_in if b == 0 else c
            shapes[f"{pre}.conv1.weight"] = (c, first_in, 3, 3)
            shapes[f"{pre}.bn1.weight"] = shapes[f"{pre}.bn1.bias"] = (c,)
            shapes[f"{pre}.conv2.weight"] = (c, c, 3, 3)
            shapes[f"{pre}.bn2.weight"] = shapes[f"{pre}.bn2.bias"] = (c,)
            if b == 0 and first_in != c:
                shapes[f"{pre}.downsample.0.weight"] = (c, first_in, 1, 1)
                shapes[f"{pre}.downsample.1.weight"] = shapes[f"{pre}.downsample.1.bias"] = (c,)
        c_in = c
    shapes["fc.weight"], shapes["fc.bias"] = (n_classes, 512), (n_classes,)
    return shapes


def _gennorm_draw(rng: np.random.Generator, beta: float, scale: float, size: int) -> np.ndarray:
    """GenNorm(beta, 0, scale) entries as float32: |x| = scale G^(1/beta), G ~ Gamma(1/beta)."""
    a = rng.standard_gamma(1.0 / beta, size) ** (1.0 / beta)
    return (scale * np.where(rng.random(size) < 0.5, -a, a)).astype(np.float32)


def build_capture(kind: str, out: Path, steps: int = 2, d_model: int = 512, layers: int = 4,
                  device: str = "cpu") -> object:
    """The capture the stages run on (see the module docstring)."""
    if kind == "synthetic":
        import scipy.stats as st

        rng = np.random.default_rng(0)
        grads = {}
        for step in range(2):
            grads[step] = {}
            for i in range(4):
                x = st.gennorm.rvs(0.8, scale=1e-3, size=1_000_000, random_state=rng).astype(np.float32)
                if i % 2:
                    x[rng.random(x.size) < 0.2] = 0.0
                grads[step][f"layer{i}.weight"] = x
        return write_capture(out, grads)
    if kind == "resnet18":
        rng = np.random.default_rng(0)
        shapes = resnet18_shapes()
        grads = {}
        for step in range(steps):
            grads[step] = {}
            for j, (name, shape) in enumerate(shapes.items()):
                size = int(np.prod(shape))
                scale = 1e-3 * (1.0 + 0.5 * np.sin(j + step))
                if len(shape) > 1:
                    grads[step][name] = _gennorm_draw(rng, 0.8, scale, size).reshape(shape)
                else:
                    grads[step][name] = (scale * rng.standard_normal(size)).astype(np.float32)
        return write_capture(out, grads)
    if kind == "workload":
        return capture_workload("stdlib-lm", out, steps=steps, every=1, device=device, progress=False,
                                d_model=d_model, n_heads=8, n_layers=layers, d_ff=4 * d_model)
    raise ValueError(f"unknown capture kind {kind!r}; choose workload, synthetic or resnet18")


def _timed(fn, repeat: int) -> tuple[float, float, object]:
    """(best wall seconds, CPU seconds of that run, result) over `repeat` runs; the CPU time counts
    this process and its finished worker processes."""

    def cpu() -> float:
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + ch.ru_utime + ch.ru_stime

    best = (float("inf"), float("inf"), None)
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), cpu()
        out = fn()
        w, c = time.perf_counter() - w0, cpu() - c0
        if w < best[0]:
            best = (w, c, out)
    return best


def bench_read(cap, repeat: int = 3) -> dict:
    """Read every record and sum |x| (what any analysis of the capture must at least do)."""

    def read() -> int:
        n = 0
        for step in cap.steps:
            for layer in cap.layers:
                try:
                    x = cap.get(layer, step)
                except ValueError:
                    continue
                float(np.abs(x).sum(dtype=np.float64))
                n += x.size
        return n

    wall, cpu, n = _timed(read, repeat)
    return {"stage": "read + sum |x|", "entries": n, "wall_s": wall, "cpu_s": cpu}


def bench_fit(cap, jobs: int, loc: str | float, device: str, single: bool, repeat: int = 1,
              max_n: int = 200_000) -> list[dict]:
    """fit_capture per family (serial) and for the four families together, serial and in a pool."""
    rows = []
    runs = [((fam,), 1) for fam in FAMILIES] if single else []
    runs += [(FAMILIES, 1), (FAMILIES, jobs)]
    tables = {}
    for fams, j in runs:
        wall, cpu, df = _timed(lambda fams=fams, j=j: fit_capture(cap, families=list(fams), loc=loc, jobs=j,
                                                                   device=device, max_n=max_n,
                                                                   progress=False), repeat)
        tables[(fams, j)] = df
        rows.append({"stage": f"fit_capture {'+'.join(fams) if len(fams) < 4 else 'all four'}",
                     "jobs": j, "records": int(df[["step", "layer", "rank"]].drop_duplicates().shape[0]),
                     "wall_s": wall, "cpu_s": cpu})
    serial, pool = tables[(FAMILIES, 1)], tables[(FAMILIES, jobs)]
    equal = serial.drop(columns="seconds").equals(pool.drop(columns="seconds"))
    rows[-1]["equal_to_serial"] = equal
    return rows


def bench_code(cap, jobs: int = 2, repeat: int = 1, device: str = "cpu") -> list[dict]:
    """code_capture with its defaults (models histogram, normal, laplace, gennorm; coders ans,
    huffman): every blob decoded (``verify=True``, the old default), the default
    ``verify="sample"`` and no decode at all (``verify=False``: what the bits alone cost; Huffman
    then builds no blob), serially, then ``verify="sample"`` with ``jobs`` worker processes (its
    table checked equal to the serial one, timing columns aside; the bits of every mode checked
    equal to ``verify=True``'s)."""
    from coders.report import code_capture

    timing = ["encode_MBps", "decode_MBps", "encode_Meps", "decode_Meps", "quantize_s", "model_s"]
    rows, tables = [], {}
    for verify, j in ((True, 1), ("sample", 1), (False, 1), ("sample", jobs)):
        wall, cpu, df = _timed(lambda verify=verify, j=j: code_capture(cap, verify=verify, jobs=j), repeat)
        tables[(verify, j)] = df.drop(columns=timing)
        rows.append({"stage": f"code_capture defaults, verify={verify}", "jobs": j,
                     "records": int(df["layer"].ne("TOTAL").sum()), "wall_s": wall, "cpu_s": cpu})
    rows[-1]["equal_to_serial"] = tables[("sample", 1)].equals(tables[("sample", jobs)])
    rows[1]["bits_equal_to_verify_true"] = tables[("sample", 1)].equals(tables[(True, 1)])
    rows[2]["bits_equal_to_verify_true"] = tables[(False, 1)].equals(tables[(True, 1)])
    for coder in ("ans", "huffman"):  # each default coder alone (same models, verify="sample")
        wall, cpu, df = _timed(lambda coder=coder: code_capture(cap, coders=(coder,)), repeat)
        rows.append({"stage": f"code_capture, coder {coder} alone", "jobs": 1,
                     "records": int(df["layer"].ne("TOTAL").sum()), "wall_s": wall, "cpu_s": cpu})
    if device != "cpu":  # records quantized on the device, coded on the host
        wall, cpu, df = _timed(lambda: code_capture(cap, device=device), repeat)
        host = tables[("sample", 1)]
        rows.append({"stage": f"code_capture defaults, verify=sample, device={device}", "jobs": 1,
                     "records": int(df["layer"].ne("TOTAL").sum()), "wall_s": wall, "cpu_s": cpu,
                     "equal_to_serial": bool(np.allclose(df["bits_per_entry"], host["bits_per_entry"],
                                                         rtol=1e-6, equal_nan=True))})
    return rows


class _EngineRuns(logging.Handler):
    """Collects the `captures.engine.EngineRun` each pooled `map_records` call logs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.runs: list = []

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "engine_run"):
            self.runs.append(record.engine_run)


def _speedups(rows: list[dict], runs: list) -> None:
    """Add speedup, critical_s, speedup_critical and pool_cpu to the pooled rows of one stage
    function (``rows``), from its serial row of the same stage and the engine runs it logged."""
    for row in rows:
        if row.get("jobs", 1) <= 1:
            continue
        serial = next((r for r in rows if r["stage"] == row["stage"] and r.get("jobs") == 1), None)
        if serial is None:
            continue
        row["speedup"] = serial["wall_s"] / row["wall_s"]
        row["pool_cpu"] = row["cpu_s"] / serial["cpu_s"]
        if runs:
            row["critical_s"] = min(r.critical_path_s for r in runs)
            row["speedup_critical"] = serial["cpu_s"] / row["critical_s"]


def _markdown(df: pd.DataFrame) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--capture", default="workload", choices=["workload", "synthetic", "resnet18"])
    p.add_argument("--steps", type=int, default=2, help="recorded optimizer steps of the workload")
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--loc", default="fit", help="'fit' or a fixed location such as 0")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-n", type=int, default=200_000, help="subsample of the sorting statistics")
    p.add_argument("--repeat", type=int, default=1, help="runs per fit figure (best wall time)")
    p.add_argument("--skip-single", action="store_true", help="only the four families together")
    p.add_argument("--code", action="store_true", help="also time code_capture (its defaults)")
    p.add_argument("--no-fit", action="store_true", help="skip the fit_capture figures")
    p.add_argument("--out", default=None, help="capture directory (default: a temporary one)")
    args = p.parse_args()
    loc = "fit" if args.loc == "fit" else float(args.loc)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp) / "capture"
        t0 = time.perf_counter()
        cap = open_capture(out) if (out / "manifest.json").exists() else build_capture(
            args.capture, out, args.steps, args.d_model, args.layers, args.device)
        built = time.perf_counter() - t0
        n_params = sum(int(np.prod(s)) for s in cap.shapes.values())
        load_before = os.getloadavg()[0]
        runs = _EngineRuns()
        engine_log = logging.getLogger("captures.engine")
        engine_log.setLevel(logging.DEBUG)
        engine_log.addHandler(runs)
        read = bench_read(cap)
        rows = [read]
        if not args.no_fit:
            fit_rows = bench_fit(cap, args.jobs, loc, args.device, not args.skip_single, args.repeat,
                                 args.max_n)
            _speedups(fit_rows, runs.runs)
            rows += fit_rows
        if args.code:
            del runs.runs[:]
            code_rows = bench_code(cap, args.jobs, args.repeat, args.device)
            _speedups(code_rows, runs.runs)
            rows += code_rows
    df = pd.DataFrame(rows)
    df["x_read_wall"] = df["wall_s"] / read["wall_s"]
    df["x_read_cpu"] = df["cpu_s"] / read["cpu_s"]
    print(f"capture: {args.capture}, {n_params / 1e6:.1f}M parameters per step, {len(cap.steps)} steps, "
          f"{read['entries'] / 1e6:.1f}M entries read; built in {built:.1f} s; loc={args.loc}, "
          f"max_n={args.max_n}, device={args.device}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(_markdown(df))


if __name__ == "__main__":
    main()
