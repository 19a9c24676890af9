"""The `gradstats` command line: parse, validate, call the library, print.

Each sub-command imports its stage lazily so that `gradstats --help` stays fast. Arguments are
checked against the names the stages expose (`gradstats.cli_validate`) before any work starts; a
bad value, a missing path or a library error ends in one line `gradstats <cmd>: error: ...`
(exit status 2 for a usage error found by the parser, 1 otherwise; `--debug` or
GRADSTATS_DEBUG=1 shows the traceback instead).

Why one file of ~750 lines: it is nine sub-commands, each a parser block and a thin `_cmd_*`
function, and a reader checks a flag's meaning across sub-commands (one meaning per name) by
reading them side by side; the checks, tables and progress live in `cli_validate.py`,
`cli_tables.py` and `cli_progress.py`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from gradstats import cli_validate as v
from gradstats.cli_progress import bar, bars

DESCRIPTION = """\
gradstats: record the gradients of real training, fit their distributions (Normal, Laplace,
generalized normal, Student-t, zero-inflated), entropy-code them (Huffman, ANS) and compare
distributed gradient compressors (PowerSGD, signSGD/Signum, top-k, QSGD, gossip methods, ...).

A typical session:
  gradstats capture --workload digits-cnn --out runs/x   record gradients every 25 steps
  gradstats inspect runs/x                               what was recorded
  gradstats fit runs/x                                   best family per layer -> runs/x/fits.parquet
  gradstats code runs/x                                  bits per entry -> runs/x/bits.parquet
  gradstats compare --methods bf16,powersgd --out runs/c train and compare compressors
  gradstats report runs/x                                runs/x/report.html
  gradstats demo                                         all of it on the built-in workloads
"""

EPILOG = """\
Flags mean the same in every sub-command: --steps N = optimizer steps to train; --every N = record
every N optimizer steps; --lr = one learning rate; --out DIR = the directory results are written
into. `gradstats <command> --help` lists each command's choices and defaults."""


# --- names of the later stages (this facade may import every stage; cli_validate only stage 1) --------
def _methods() -> list[str]:
    from coders.algorithms.registry import methods

    return list(methods())


def _backends() -> tuple[str, ...]:
    from coders.runtime.train import BACKENDS as names

    return tuple(names)


def _topologies() -> tuple[str, ...]:
    from coders.runtime.topology import TOPOLOGIES as names

    return tuple(names)


def _baselines() -> tuple[str, ...]:
    from analysis.compare import BASELINES as names

    return tuple(names)


def _model_params(text: str) -> list[int]:
    """argparse type of `compare --model-params`: a comma list of sizes such as 124M,1.5B."""
    from analysis.step_time import parse_params

    items = v.csv(text)
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma list of sizes such as 124M,1.5B, got {text!r}")
    try:
        return [parse_params(t) for t in items]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _engines() -> tuple[str, ...]:
    from captures.engine import ENGINES as names

    return tuple(names)


CODE_FITS = ("codelength", "values")
"""`code --fit` choices: `coders.report.code_capture(fit=)` (as in `bits_per_entry`)."""
CODE_VERIFY = {"sample": "sample", "all": True, "none": False}
"""`code --verify` choices and the `code_capture(verify=)` each stands for."""

TRAIN_TIMEOUT_S = 600.0
"""`train --timeout` default: `coders.runtime.train.DEFAULT_TIMEOUT` (not imported: help stays fast)."""

METHODS = v.Names(_methods)
BACKENDS = v.Names(_backends)
TOPOLOGIES = v.Names(_topologies)
BASELINES = v.Names(_baselines)
ENGINES = v.Names(_engines)


def _needs_topology(method: str) -> bool:
    """True for a decentralized (gossip) method, which runs on a topology."""
    from coders.algorithms.registry import method_class

    return bool(getattr(method_class(method), "needs_topology", False))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gradstats")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _UsageExit(SystemExit):
    """Exit status 2 (argparse's convention) whose text is the one-line message (for in-process callers)."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line: `<prog>: error: <message> (see <prog> --help)`."""

    def error(self, message: str) -> NoReturn:
        line = f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)"
        print(line, file=sys.stderr)
        raise _UsageExit(line)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows `(default: X)` where a default exists (not for None / False: the help text says what then)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = (action.help or "").replace("{METHODS}", str(METHODS))  # loaded only when help is shown
        if action.default in (None, False, argparse.SUPPRESS) or "%(default)" in text:
            return text
        return super()._get_help_string(action)


class _Renamed(argparse.Action):
    """A flag that moved to another name: using it is a usage error pointing to the new one."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", why: str = "", **kw: Any) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs="?",
                         help=argparse.SUPPRESS)
        self.new, self.why = new, why

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.error(f"{option_string} is now {self.new} ({self.why})")


def _fail(message: str) -> NoReturn:
    raise v.CLIError(message)


def _warn(args: argparse.Namespace, message: str) -> None:
    print(f"gradstats {args.command}: warning: {message}", file=sys.stderr, flush=True)


# --- output paths ---------------------------------------------------------------------------------
_FILE_SUFFIXES = {".parquet", ".csv"}
_OTHER_FILE_SUFFIXES = {".txt", ".tsv", ".json", ".pq", ".feather", ".pkl", ".h5", ".xlsx", ".npz"}


def _table_path(args: argparse.Namespace, default_dir: Path | None, stem: str) -> Path | None:
    """Where a table goes: `--out DIR` (or `default_dir`) / `<stem>.parquet` (`.csv` with `--csv`).

    An `--out` ending in .parquet / .csv is still taken as the file itself (the older meaning).
    """
    out = getattr(args, "out", None)
    suffix = ".csv" if getattr(args, "csv", False) else ".parquet"
    if out is None:
        return None if default_dir is None else default_dir / f"{stem}{suffix}"
    p = Path(out)
    if p.suffix.lower() in _FILE_SUFFIXES and not p.is_dir():
        _warn(args, f"--out is a directory ({stem}{suffix} is written into it); taking {out} as the file "
                    "itself, as before")
        return p
    if p.suffix.lower() in _OTHER_FILE_SUFFIXES and not p.is_dir():
        _fail(f"--out is the directory to write {stem}{suffix} into; {out!r} looks like a file name "
              "(only a file name ending in .parquet or .csv is still accepted)")
    return p / f"{stem}{suffix}"


def _write(df: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)


# --- captures -------------------------------------------------------------------------------------
_UNFINISHED = {"recording": "its writer is still recording",
               "interrupted": "its writer died before finishing", "aborted": "the recorded run raised"}


def _open_checked(args: argparse.Namespace, path: str) -> tuple[Any, list[int]]:
    """The capture `path` names and its readable steps (rank 0); damaged files fail unless --allow-damaged.

    Damage is what the store finds in every file's header (`Capture.damaged`, cheap: no tensor data is
    read); a flipped bit inside a tensor shows only in its CRC-32, which `inspect --verify` checks.
    """
    from captures import open_capture

    cap = open_capture(v.capture_dir(path))
    bad = cap.damaged
    readable = cap.readable_steps(rank=0)
    if bad:
        if not getattr(args, "allow_damaged", False):
            _fail(f"{cap.path}: {v.damage_text(bad)}; pass --allow-damaged to use the "
                  f"{len(readable)} readable step(s)")
        _warn(args, f"{cap.path}: {v.damage_text(bad)}; using the {len(readable)} readable step(s)")
    elif cap.status in _UNFINISHED:
        _warn(args, f"{cap.path}: status {cap.status} ({_UNFINISHED[cap.status]}); using the "
                    f"{len(readable)} step(s) it wrote")
    return cap, readable


def _run_dir(cap: Any) -> Path:
    """The run directory of a capture: the parent of `<run>/capture`, else the capture directory itself."""
    return cap.path.parent if cap.path.name == "capture" else cap.path


def _chosen_steps(args: argparse.Namespace, readable: list[int], all_steps: list[int]) -> list[int]:
    """`--record-steps` (each one recorded and readable), else every `--record-stride`-th readable step."""
    if args.record_steps is not None:
        if getattr(args, "record_stride", 1) != 1:
            _fail("give --record-steps (exact steps) or --record-stride (every N-th step), not both")
        missing = [s for s in args.record_steps if s not in all_steps]
        if missing:
            shown = ", ".join(map(str, all_steps[:12])) + (" ..." if len(all_steps) > 12 else "")
            _fail(f"--record-steps {missing[0]} was not recorded; recorded steps: {shown}")
        damaged = [s for s in args.record_steps if s not in readable]
        if damaged:
            _fail(f"--record-steps {damaged[0]}: that step's file is damaged")
        return list(args.record_steps)
    if not readable:
        _fail("the capture has no readable step files" if all_steps else "the capture has no recorded steps")
    return readable[:: getattr(args, "record_stride", 1)]


def _cmd_capture(args: argparse.Namespace) -> int:
    import torch

    from captures import is_capture_dir
    from captures.workloads import capture_workload
    from gradstats.cli_tables import number

    out = _out_dir(args)
    if is_capture_dir(out) and not args.overwrite:  # before the workload is built
        _fail(f"{out} already holds a capture; pass --overwrite to replace it, or choose another --out")
    dtype = getattr(torch, args.dtype) if args.dtype else None
    cap = capture_workload(args.workload, out_dir=out, steps=args.steps, every=args.every,
                           sample=args.sample, what=args.what, summary_only=args.summary_only,
                           device=args.device, seed=args.seed, layers=args.layers, dtype=dtype,
                           overwrite=args.overwrite, progress=bars(not args.no_progress))
    print(cap.describe())
    ev = cap.manifest.get("extra", {}).get("eval", {})
    if ev:
        print("final evaluation: " + ", ".join(f"{k} {number(val)}" for k, val in ev.items()))
    print(f"capture written to {out}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from captures import open_capture

    cap = open_capture(v.capture_dir(args.path))
    print(cap.describe())  # names the files whose headers do not read
    if args.verify:
        files = cap.check(verify=True)
        print(f"verified the CRC-32 of every tensor in {int((files['role'] == 'step').sum())} step file(s)")
    bad = cap.damaged
    if bad and not args.allow_damaged:
        _fail(f"{cap.path}: {v.damage_text(bad)} (pass --allow-damaged to accept the capture as it is)")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    cap, readable = _open_checked(args, args.path)
    if cap.summary_only:
        _fail(f"{cap.path} is a summary-only capture (moments and histograms, no tensors); nothing to fit")
    steps = _chosen_steps(args, readable, cap.steps)
    out = _table_path(args, _run_dir(cap), "fits")
    _check_engine(args)

    from gradstats.cli_tables import table
    from gradstats.fitting import fit_capture, summarize_fits

    fits = fit_capture(cap, families=args.families, steps=steps, layers=args.layers, loc=args.loc,
                       bootstrap=args.bootstrap, jobs=args.jobs, device=args.device,
                       progress=bars(not args.no_progress), engine=args.engine, scheduler=args.scheduler)
    _write(fits, out)
    summary = summarize_fits(fits)
    tails = [c for c in summary.columns if c.startswith("tail_log10_")]
    print(f"best family per layer over {len(steps)} recorded step(s): best = most often lowest BIC, "
          "best_share = how often; tail_log10_p = log10(model / empirical tail mass at p), 0 is exact:")
    print(table(summary, {"layer": "layer", "records": "records", "best": "best", "best_share": "best_share",
                          "beta": "beta (median)", **{c: c for c in tails}}, digits=3))
    print(f"{len(fits)} fits written to {out}")
    return 0


def _check_engine(args: argparse.Namespace) -> None:
    """`--engine` / `--scheduler` of fit and code: dask installed, an address only for dask."""
    if args.scheduler is not None and args.engine != "dask":
        _fail(f"--scheduler applies to --engine dask only (got --engine {args.engine})")
    if args.engine == "dask":
        import importlib.util

        from captures.engine import DASK_MISSING

        if importlib.util.find_spec("distributed") is None:
            _fail(f"--engine dask: {DASK_MISSING}")


_QUANTIZER_FLAGS = {"uniform": {"step_size", "levels", "clip_quantile", "block_size", "stochastic"},
                    "lloyd-max": {"levels", "family"}, "ecsq": {"step_size", "lam"}}


def _quantizer(args: argparse.Namespace) -> Any:
    """The quantizer `--quantizer` names, built from the flags that apply to it."""
    from coders.quantizers import EntropyConstrainedQuantizer, LloydMaxQuantizer, UniformQuantizer

    given = {k for k in ("step_size", "levels", "family", "lam", "block_size")
             if getattr(args, k) is not None} | ({"stochastic"} if args.stochastic else set())
    stray = sorted(given - _QUANTIZER_FLAGS[args.quantizer])
    if stray:
        _fail(f"--{stray[0].replace('_', '-')} does not apply to --quantizer {args.quantizer}; its flags: "
              + ", ".join(f"--{f.replace('_', '-')}" for f in sorted(_QUANTIZER_FLAGS[args.quantizer])))
    if args.quantizer == "uniform" and args.levels is not None and args.step_size is not None:
        _fail("give --step-size (a step as a multiple of the RMS) or --levels (clipped levels), not both")
    c = 0.5 if args.step_size is None else args.step_size
    try:
        if args.quantizer == "uniform":
            opts = {"block_size": args.block_size, "stochastic": args.stochastic}
            if args.levels is not None:
                return UniformQuantizer(levels=args.levels, clip_quantile=args.clip_quantile, **opts)
            return UniformQuantizer(scale_mult=c, **opts)
        if args.quantizer == "lloyd-max":
            return LloydMaxQuantizer(levels=16 if args.levels is None else args.levels,
                                     family=args.family or "gennorm")
        return EntropyConstrainedQuantizer(scale_mult=c, lam=0.2 if args.lam is None else args.lam)
    except ValueError as e:
        _fail(f"--quantizer {args.quantizer}: {e}")


def _cmd_code(args: argparse.Namespace) -> int:
    v.capture_dir(args.path)  # a wrong path fails before anything is imported
    quant = _quantizer(args)
    cap, readable = _open_checked(args, args.path)
    if cap.summary_only:
        _fail(f"{cap.path} is a summary-only capture (moments and histograms, no tensors); nothing to code")
    steps = _chosen_steps(args, readable, cap.steps)
    out = _table_path(args, _run_dir(cap), "bits")
    _check_engine(args)

    import contextlib

    import pandas as pd

    from captures.engine import dask_client
    from coders.report import TOTAL, code_capture, family_comparison
    from gradstats.cli_tables import table

    frames, skipped = [], []
    # one call per recorded step so that the CLI can show progress (code_capture has no callback)
    progress = bar(len(steps), "code", "step", not args.no_progress)
    # one Dask client (and local cluster) for all the steps, not one per call
    engine = dask_client(args.scheduler, args.jobs) if args.engine == "dask" else contextlib.nullcontext()
    with engine as client:
        for step in steps:
            part = code_capture(cap, quant, models=args.models, coders=args.coders, steps=[step],
                                layers=args.layers, raw_baselines=args.raw, loc=args.loc, fit=args.fit,
                                jobs=args.jobs, engine=args.engine, scheduler=client, device=args.device,
                                verify=CODE_VERIFY[args.verify])
            skipped += part.attrs.get("errors", [])
            frames.append(part)
            progress.update(1)
    progress.close()
    df = pd.concat(frames, ignore_index=True)
    _write(df, out)
    for step, layer, message in skipped:  # non-finite records: the others are coded, these are named
        print(f"gradstats code: warning: step {step}, layer {layer} not coded: {message}", file=sys.stderr)
    tot = df[df["layer"] == TOTAL]
    print(f"quantizer: {quant.name}")
    print("whole model per step (total_bits_per_entry includes all side information; gap_entropy = "
          "bits / entropy - 1; ratio_vs_bf16 = 16 / total_bits_per_entry):")
    print(table(tot, ["step", "model", "coder", "total_bits_per_entry", "entropy", "gap_entropy",
                      "ratio_vs_bf16"]))
    failed = df[(df["layer"] != TOTAL) & df["error"].fillna("").astype(bool)]
    for model, g in failed.groupby("model", sort=False):
        print(f"note: model {model} could not be built for {g['layer'].nunique()} layer(s), e.g. "
              f"{g['layer'].iloc[0]}: {g['error'].iloc[0]}")
    entropy_coders = [k for k in args.coders if not k.startswith("zstd")]
    models = set(df["model"])
    ref = next((m for m in ("zi-gennorm", "gennorm") if m in models), None)
    others = [m for m in ("normal", "laplace", "zi-normal", "zi-laplace") if m in models]
    if entropy_coders and ref and others:
        last = df[(df["step"] == df["step"].max()) & (df["layer"] != TOTAL)]
        cmp = family_comparison(last, coder=entropy_coders[0], reference=ref, others=others)
        print(f"\nper layer at step {int(last['step'].iloc[0])}, {entropy_coders[0]}: bits per entry of each "
              f"model and the fraction of bits {ref} saves over the others")
        print(table(cmp.drop(columns=["step"], errors="ignore"), digits=3))
    print(f"\nbits written to {out} (all columns, every layer)")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from coders.runtime.train import train
    from gradstats.cli_tables import bits, key_values, table

    options = v.parse_options(args.option)
    from coders.algorithms.registry import method_option_names

    v.check_method_options(args.method, options, method_option_names(args.method))
    gossip = _needs_topology(args.method)
    if args.topology is not None and not gossip:
        decentral = ", ".join(m for m in METHODS if _needs_topology(m))
        _fail(f"--topology {args.topology} does not apply: method {args.method!r} is centralized; "
              f"topologies are for the decentralized methods: {decentral}")
    if args.capture is None:
        for flag in ("capture_every", "capture_sample"):
            if getattr(args, flag) is not None:
                _fail(f"--{flag.replace('_', '-')} applies only with --capture DIR")
    elif Path(args.capture).exists() and not Path(args.capture).is_dir():
        _fail(f"--capture {args.capture} is a file; give a directory to record into")
    out = _table_path(args, None, "history")
    rank0 = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 reports
    # a bar over rank 0's steps: from its thread in the simulator, from the launcher's poll under gloo
    result = train(args.workload, args.method, args.workers, args.steps, backend=args.backend,
                   topology=args.topology, seed=args.seed, lr=args.lr, options=options,
                   eval_every=args.eval_every, split=args.split, batch_size=args.batch_size,
                   device=args.device, timeout=args.timeout, capture=args.capture,
                   capture_every=1 if args.capture_every is None else args.capture_every,
                   capture_sample=args.capture_sample, progress=bars(not args.no_progress and rank0))
    if not rank0:
        return 0
    h = result.history
    evals = h[h["metric"].notna()].assign(step_ms=lambda d: 1e3 * d["step_s"])
    print(table(evals, {"step": "step", "loss": "loss", "metric": result.metric_name, "bits_up": "bits_up",
                        "bits_down": "bits_down", "bits_wire": "bits_wire", "step_ms": "step_ms"},
                formats={"bits_up": bits, "bits_down": bits, "bits_wire": bits}))
    s = result.summary()
    print(key_values({
        "method": s["method"], "workload": s["workload"], "workers": s["workers"], "steps": s["steps"],
        "lr": s["lr"], f"{result.metric_name} (last evaluation)": s[result.metric_name],
        "final_loss (mean of last 5 steps)": s["final_loss"],
        "bits_up_per_step (per worker)": bits(s["bits_up_per_step"]),
        "bits_down_per_step (per worker)": bits(s["bits_down_per_step"]),
        "bits_wire_per_step (per worker)": bits(s["bits_wire_per_step"]),
        "compress_ms (per step)": s["compress_ms"], "decompress_ms (per step)": s["decompress_ms"],
        "step_ms": s["step_ms"], "pattern": s["pattern"], "allreduce_compatible": s["allreduce_compatible"],
    }))
    if out is not None:
        _write(h, out)
        print(f"history written to {out}")
    if args.capture is not None:
        print(f"what each worker compresses recorded in {args.capture}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from analysis.compare import Network, compare
    from analysis.report import compare_table, write_compare_figures
    from gradstats.cli_tables import bits, table

    _out_dir(args)
    net = Network(args.bandwidth_gbps, args.latency_us)
    methods = list(dict.fromkeys(args.methods))
    if len(methods) != len(args.methods):
        _fail(f"--methods lists a method twice: {args.methods}")
    compared = methods if args.baseline in methods else [args.baseline, *methods]
    lrs = v.parse_lrs(args.lrs, compared)
    progress = bar(len(compared), "compare", "method", not args.no_progress)
    seen: list[str] = []

    def started(method: str) -> None:
        if seen:
            progress.update(1)
        seen.append(method)
        progress.set_postfix_str(f"training {method}")

    comp = compare(args.workload, methods, workers=args.workers, steps=args.steps, backend=args.backend,
                   net=net, topology=args.topology, seed=args.seed, target=args.target,
                   eval_every=args.eval_every, lrs=lrs, device=args.device, baseline=args.baseline,
                   progress=started, seeds=args.seeds, model_params=args.model_params or ())
    progress.update(1)
    progress.set_postfix_str("")
    progress.close()
    paths = comp.save(args.out)
    write_compare_figures(args.out)
    s = comp.summary
    metric = s["metric_name"].iloc[0]  # final_metric and target are in this metric
    print(net.describe())
    print(f"compute per step (one worker, measured): {comp.compute_s * 1e3:.3f} ms")
    print(f"target {metric}: {s['target'].iloc[0]:.4g}"
          + ("" if args.target is not None else f" (95% of {args.baseline}'s final)"))
    print(f"per method (bits per worker per step; ratios and speedup relative to {args.baseline}; "
          "iter_overlap_s = modelled step time with communication overlapped):")
    print(table(compare_table(s), ["method", "lr", "final_metric", "steps_to_target", "bits_up", "bits_down",
                                   "up_ratio_vs_bf16", "iter_overlap_s", "speedup_vs_bf16"],
                formats={"bits_up": bits, "bits_down": bits}))
    print(f"all columns in {paths['csv']}; also {paths['summary']}, {paths['history']}, "
          f"figures in {Path(args.out) / 'figures'}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from analysis.report import capture_dir, find_units, write_report
    from captures import open_capture

    root = Path(args.path)
    if not root.is_dir():
        _fail(f"no run directory at {args.path}" + (" (it is a file)" if root.exists() else ""))
    for unit in find_units(root):
        d = capture_dir(unit)
        if d is None:
            continue
        bad = open_capture(d).damaged
        if bad and not args.allow_damaged:
            _fail(f"{d}: {v.damage_text(bad)}; pass --allow-damaged to report on the readable steps")
        if bad:
            _warn(args, f"{d}: {v.damage_text(bad)}; the figures of that capture use the readable steps")
    path = write_report(root, figures=not args.no_figures, progress=bars(not args.no_progress))
    print(f"report written to {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from analysis.demo import DemoConfig, format_result, run_demo

    _out_dir(args)
    cfg = DemoConfig.quick(device=args.device) if args.quick else DemoConfig(device=args.device)
    res = run_demo(args.out, cfg, progress=bars(not args.no_progress))
    print(format_result(res))
    return 0


# --- the parser -----------------------------------------------------------------------------------
def _common(progress: bool) -> argparse.ArgumentParser:
    p = _Parser(add_help=False)
    if progress:
        p.add_argument("--no-progress", action="store_true",
                       help="no progress (a bar on a terminal, plain lines in a log otherwise)")
    p.add_argument("--debug", action="store_true",
                   help="show the Python traceback of an error (also GRADSTATS_DEBUG=1)")
    return p


def _engine_flags(p: argparse.ArgumentParser) -> None:
    """--engine and --scheduler of the whole-capture commands (fit, code): `captures.engine`."""
    p.add_argument("--engine", default="process", choices=ENGINES, metavar="NAME",
                   help="where the records run: process (--jobs worker processes on this machine) or dask "
                        "(a dask.distributed cluster, pip install 'gradstats[dask]'); default: process")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="--engine dask: the scheduler's address, e.g. tcp://host:8786 (every worker must "
                        "read the capture at the same path); default: a local cluster of --jobs workers")


def _capture_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-damaged", action="store_true",
                   help="accept a capture with unreadable step files and use its readable steps")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gradstats", description=DESCRIPTION, epilog=EPILOG, formatter_class=_Formatter)
    p.add_argument("--version", action="version", version=f"gradstats {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="command", parser_class=_Parser)
    quiet, long = _common(False), _common(True)

    def command(name: str, text: str, progress: bool = True) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, parents=[long if progress else quiet],
                              formatter_class=_Formatter, epilog=EPILOG)

    c = command("capture", "train a built-in workload and record its gradients into --out")
    c.add_argument("--workload", default="digits-cnn", choices=v.WORKLOADS, metavar="NAME",
                   help="built-in workload: %(choices)s")
    c.add_argument("--steps", type=v.positive_int, default=300, metavar="N", help="optimizer steps to train")
    c.add_argument("--every", type=v.positive_int, default=25, metavar="N",
                   help="record every N optimizer steps")
    c.add_argument("--sample", type=v.sample, default=None,
                   help="entries recorded per layer: a count (100000, 1e5) or a fraction (0.01); "
                        "default: full tensors")
    c.add_argument("--what", type=v.kinds, default="grad", metavar="KINDS",
                   help="comma list of what to record, from: grad, update")
    c.add_argument("--summary-only", action="store_true", help="store moments + histograms only")
    c.add_argument("--layers", default=None, metavar="GLOB", help="parameter names to record; default: all")
    c.add_argument("--dtype", default=None, choices=v.DTYPES, metavar="DTYPE",
                   help="store values as %(choices)s; default: the parameters' dtype")
    c.add_argument("--overwrite", action="store_true", help="replace a capture already in --out")
    c.add_argument("--device", type=v.device, default="cpu", help="cpu, cuda or cuda:N")
    c.add_argument("--seed", type=int, default=0, help="random seed")
    c.add_argument("--out", required=True, metavar="DIR", help="directory to write the capture into")
    c.set_defaults(func=_cmd_capture)

    i = command("inspect", "print layers, steps, shapes and sizes of a capture; name damaged files", False)
    i.add_argument("path", help="a capture directory or a run directory holding capture/")
    i.add_argument("--verify", action="store_true",
                   help="also read every tensor and check its CRC-32 (reads the whole capture)")
    _capture_flags(i)
    i.set_defaults(func=_cmd_inspect)

    f = command("fit", "fit distribution families per layer and recorded step")
    f.add_argument("path", help="a capture directory or a run directory holding capture/")
    f.add_argument("--families", type=v.families, default="normal,laplace,gennorm,zi-gennorm",
                   help=f"comma list from: {v.FAMILIES_TEXT}")
    f.add_argument("--record-stride", type=v.positive_int, default=1, metavar="N",
                   help="fit every N-th recorded step")
    f.add_argument("--record-steps", type=v.int_list, default=None, metavar="LIST",
                   help="comma list of recorded steps to fit (e.g. 0,100,200); default: all, thinned by "
                        "--record-stride")
    f.add_argument("--every", action=_Renamed, new="--record-stride",
                   why="--every is capture's recording interval")
    f.add_argument("--layers", default=None, metavar="GLOB", help="layer names to fit; default: all")
    f.add_argument("--loc", type=v.location, default="fit",
                   help="'fit' to estimate the location, or a number such as 0 to hold it fixed")
    f.add_argument("--bootstrap", type=v.nonnegative_int, default=0, metavar="N",
                   help="bootstrap replicates for an interval of beta")
    f.add_argument("--jobs", type=v.positive_int, default=None, metavar="N",
                   help="worker processes over records (1: in this process); default: all CPUs for a "
                        "capture of 4M+ entries on the CPU, else 1")
    f.add_argument("--device", type=v.device, default="cpu",
                   help="where each record's fits run: cpu, cuda or cuda:N")
    _engine_flags(f)
    f.add_argument("--out", default=None, metavar="DIR",
                   help="directory to write fits.parquet into; default: the run directory")
    f.add_argument("--csv", action="store_true", help="write fits.csv instead of fits.parquet")
    _capture_flags(f)
    f.set_defaults(func=_cmd_fit)

    k = command("code", "quantize and entropy-code a capture: bits per entry per model and coder")
    k.add_argument("path", help="a capture directory or a run directory holding capture/")
    k.add_argument("--models", type=v.models, default="histogram,normal,laplace,gennorm,zi-gennorm",
                   help=f"comma list of probability models: {v.MODELS_TEXT}")
    k.add_argument("--coders", type=v.coders_list, default="ans,huffman",
                   help=f"comma list of entropy coders: {v.CODERS_TEXT}")
    k.add_argument("--quantizer", default="uniform", choices=v.QUANTIZERS, metavar="NAME",
                   help="uniform (--step-size or --levels), lloyd-max (--levels, --family), "
                        "ecsq: entropy-constrained (--step-size, --lam)")
    k.add_argument("--step-size", type=v.positive_float, default=None, metavar="C",
                   help="uniform / ecsq: quantizer step as a multiple of the RMS; default: 0.5")
    k.add_argument("--levels", type=v.positive_int, default=None, metavar="N",
                   help="uniform: N clipped levels (>= 3) instead of a step; lloyd-max: N levels (>= 2), "
                        "default: 16")
    k.add_argument("--clip-quantile", type=v.unit_interval, default=0.999, metavar="Q",
                   help="uniform with --levels: clip at this quantile of |x|")
    k.add_argument("--block-size", type=v.positive_int, default=None, metavar="N",
                   help="uniform: one scale per block of N entries (e.g. 128, 4096); default: one per layer")
    k.add_argument("--stochastic", action="store_true", help="uniform: stochastic (unbiased) rounding")
    k.add_argument("--family", type=v.family, default=None,
                   help=f"lloyd-max: family of the density the levels are designed for ({v.FAMILIES_TEXT}); "
                        "default: gennorm")
    k.add_argument("--lam", type=v.nonnegative_float, default=None,
                   help="ecsq: weight of the rate in distortion + lam * rate; default: 0.2")
    k.add_argument("--device", type=v.device, default="cpu",
                   help="cpu, cuda or cuda:N: quantize each record there (the coders run on the host)")
    k.add_argument("--layers", default=None, metavar="GLOB", help="layer names to code; default: all")
    k.add_argument("--record-steps", type=v.int_list, default=None, metavar="LIST",
                   help="comma list of recorded steps to code (e.g. 0,100); default: all")
    k.add_argument("--steps", action=_Renamed, new="--record-steps",
                   why="--steps is the number of optimizer steps to train")
    k.add_argument("--loc", type=v.location, default="fit",
                   help="location of the parametric models: 'fit' to estimate it, or a number such as 0 to "
                        "hold it fixed")
    k.add_argument("--fit", default="codelength", choices=CODE_FITS, metavar="HOW",
                   help="how the parametric models are fitted: %(choices)s (codelength: minimum code length "
                        "of the quantized symbols; values: maximum likelihood on the float values)")
    k.add_argument("--verify", default="sample", choices=CODE_VERIFY, metavar="HOW",
                   help="which coded streams are decoded and checked: %(choices)s (sample: per record and "
                        "coder one seeded window of one model's stream, all: every stream whole, none)")
    k.add_argument("--raw", action="store_true", help="add zstd on the raw float32 / bf16 values")
    k.add_argument("--jobs", type=v.positive_int, default=None, metavar="N",
                   help="worker processes over records (1: in this process); default: all CPUs for a "
                        "step of 4M+ entries, else 1")
    _engine_flags(k)
    k.add_argument("--out", default=None, metavar="DIR",
                   help="directory to write bits.parquet into; default: the run directory")
    k.add_argument("--csv", action="store_true", help="write bits.csv instead of bits.parquet")
    _capture_flags(k)
    k.set_defaults(func=_cmd_code, record_stride=1)

    t = command("train", "train a workload with one distributed method (simulated workers or "
                         "torch.distributed)")
    t.add_argument("--workload", default="digits-cnn", choices=v.WORKLOADS, metavar="NAME",
                   help="built-in workload: %(choices)s")
    t.add_argument("--method", default="bf16", choices=METHODS, metavar="NAME", help="method: %(choices)s")
    t.add_argument("--workers", type=v.positive_int, default=4, metavar="N", help="number of workers")
    t.add_argument("--topology", default=None, choices=TOPOLOGIES, metavar="NAME",
                   help="decentralized methods only: %(choices)s; default: ring")
    t.add_argument("--backend", default="sim", choices=BACKENDS, metavar="NAME",
                   help="sim (threads in this process), gloo or nccl (torch.distributed): %(choices)s")
    t.add_argument("--steps", type=v.positive_int, default=200, metavar="N", help="optimizer steps to train")
    t.add_argument("--lr", type=v.positive_float, default=None,
                   help="learning rate; default: the method's (else the workload's)")
    t.add_argument("--seed", type=int, default=0, help="random seed")
    t.add_argument("--eval-every", type=v.positive_int, default=None, metavar="N",
                   help="evaluate every N steps; default: steps / 10")
    t.add_argument("--split", default="iid", choices=v.SPLITS, metavar="NAME",
                   help="how data is split over workers: %(choices)s")
    t.add_argument("--batch-size", type=v.positive_int, default=None, metavar="N",
                   help="per worker; default: the workload's")
    t.add_argument("--device", type=v.device, default=None,
                   help="cpu, cuda or cuda:N; default: cuda for nccl, else cpu")
    t.add_argument("--option", action="append", default=None, metavar="KEY=VALUE",
                   help="a method option, repeatable (e.g. --option rank=2 --option ratio=0.01)")
    t.add_argument("--timeout", type=v.positive_float, default=TRAIN_TIMEOUT_S, metavar="SECONDS",
                   help="deadline of the whole run; a stuck or failed worker is named when it passes")
    t.add_argument("--capture", default=None, metavar="DIR",
                   help="record each worker's gradient, update and compressor inputs into DIR; "
                        "default: none")
    t.add_argument("--capture-every", type=v.positive_int, default=None, metavar="N",
                   help="with --capture: record every N optimizer steps; default: 1")
    t.add_argument("--capture-sample", type=v.sample, default=None, metavar="S",
                   help="with --capture: entries recorded per layer, a count (100000, 1e5) or a fraction "
                        "(0.01); default: full tensors")
    t.add_argument("--out", default=None, metavar="DIR",
                   help="directory to write history.parquet into; default: not written")
    t.add_argument("--csv", action="store_true", help="write history.csv instead of history.parquet")
    t.set_defaults(func=_cmd_train)

    m = command("compare", "train several methods and compare accuracy, bits and time under a network model")
    m.add_argument("--workload", default="digits-cnn", choices=v.WORKLOADS, metavar="NAME",
                   help="built-in workload: %(choices)s")
    m.add_argument("--methods", type=v.names_of("method", METHODS),
                   default="bf16,powersgd,signum-mv,s3gd-mv,mcm,powergossip",
                   help="comma list of methods from: {METHODS}")
    m.add_argument("--workers", type=v.positive_int, default=8, metavar="N", help="number of workers")
    m.add_argument("--backend", default="sim", choices=BACKENDS, metavar="NAME",
                   help="sim (threads in this process), gloo or nccl (torch.distributed): %(choices)s")
    m.add_argument("--steps", type=v.positive_int, default=200, metavar="N", help="optimizer steps to train")
    m.add_argument("--bandwidth-gbps", type=v.positive_float, default=10.0, metavar="GBPS",
                   help="network bandwidth of the alpha-beta model, Gbit/s")
    m.add_argument("--latency-us", type=v.nonnegative_float, default=5.0, metavar="US",
                   help="network latency of the alpha-beta model, microseconds")
    m.add_argument("--topology", default="ring", choices=TOPOLOGIES, metavar="NAME",
                   help="topology of the decentralized methods: %(choices)s")
    m.add_argument("--eval-every", type=v.positive_int, default=None, metavar="N",
                   help="evaluate every N steps; default: steps / 10")
    m.add_argument("--target", type=v.finite_float, default=None,
                   help="target metric; default: 95%% of the baseline's final metric")
    m.add_argument("--lrs", default=None, metavar="METHOD=LR,...",
                   help="per-method learning rates, e.g. signum-mv=0.01,mcm=0.02; default: each method's")
    m.add_argument("--lr", dest="lrs", help=argparse.SUPPRESS)  # older name of --lrs
    m.add_argument("--baseline", default="bf16", choices=BASELINES, metavar="NAME",
                   help="the 16-bit all-reduce reference, %(choices)s (trained first when not in --methods)")
    m.add_argument("--seed", type=int, default=0, help="random seed")
    m.add_argument("--seeds", type=v.int_list, default=None, metavar="LIST",
                   help="comma list of seeds (e.g. 0,1,2): every method trains once per seed and the table "
                        "shows means; default: --seed alone")
    m.add_argument("--model-params", type=_model_params, default=None, metavar="SIZES",
                   help="comma list of model sizes (e.g. 124M,1.5B) to project the modelled step time to; "
                        "default: none")
    m.add_argument("--device", type=v.device, default="cpu", help="cpu, cuda or cuda:N")
    m.add_argument("--out", default="runs/compare", metavar="DIR",
                   help="directory to write compare.parquet, compare.csv, the history and figures into")
    m.set_defaults(func=_cmd_compare)

    r = command("report", "write <run>/report.html from what the run directory holds")
    r.add_argument("path", help="a run directory (capture/, fits.parquet, bits.parquet, compare.parquet)")
    r.add_argument("--no-figures", action="store_true", help="embed existing figures only; draw none")
    _capture_flags(r)
    r.set_defaults(func=_cmd_report)

    d = command("demo", "the main job: capture, fit, code, compare and report on the built-in workloads")
    d.add_argument("--quick", action="store_true", help="small sizes (what the tests run)")
    d.add_argument("--out", default="runs/demo", metavar="DIR", help="directory to write every result into")
    d.add_argument("--device", type=v.device, default="cpu", help="cpu, cuda or cuda:N")
    d.set_defaults(func=_cmd_demo)
    return p


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename:  # "[Errno 2] ..." reads as noise
        return f"{exc.strerror}: {exc.filename}"
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and any(line.startswith("Traceback") for line in lines):
        lines = [lines[0], lines[-1]]  # a worker's error carried with its traceback: where, then what
    return " ".join(" ".join(lines).split()) or type(exc).__name__


def _out_dir(args: argparse.Namespace) -> Path:
    """`--out DIR` of a command that writes several files; a path that is a file fails up front."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        _fail(f"--out {args.out} is a file; give a directory to write into")
    return out


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; errors end as one line on stderr (`SystemExit`), tracebacks only with --debug."""
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("GRADSTATS_DEBUG", "") not in ("", "0")
    prefix = f"gradstats {args.command}: error:"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        raise SystemExit(f"gradstats {args.command}: interrupted") from None
    except (ValueError, OSError) as exc:  # bad values, missing or unreadable files, library checks
        if debug:
            raise
        raise SystemExit(f"{prefix} {_one_line(exc)}") from None
    except Exception as exc:  # a bug: still one line, with the way to see more
        if debug:
            raise
        raise SystemExit(f"{prefix} {type(exc).__name__}: {_one_line(exc)} (rerun with --debug for the "
                         "traceback)") from None


if __name__ == "__main__":
    sys.exit(main())
