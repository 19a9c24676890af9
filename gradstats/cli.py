"""The `gradstats` command line: parse, call the library, print.

Each sub-command imports its stage lazily so that `gradstats --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _cmd_capture(args: argparse.Namespace) -> int:
    import torch

    from captures.recorder import parse_sample
    from captures.workloads import capture_workload

    dtype = None
    if args.dtype:
        dtype = getattr(torch, args.dtype, None)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise SystemExit(f"gradstats capture: --dtype must be a floating torch dtype, got {args.dtype!r}")
    try:
        cap = capture_workload(
            args.workload,
            out_dir=args.out,
            steps=args.steps,
            every=args.every,
            sample=parse_sample(args.sample),
            what=tuple(_csv(args.what)),
            summary_only=args.summary_only,
            device=args.device,
            seed=args.seed,
            layers=args.layers,
            dtype=dtype,
            overwrite=args.overwrite,
        )
    except ValueError as e:
        raise SystemExit(f"gradstats capture: {e}") from e
    print(cap.describe())
    ev = cap.manifest.get("extra", {}).get("eval", {})
    if ev:
        print("final evaluation: " + ", ".join(f"{k} {v:.4g}" for k, v in ev.items()))
    print(f"capture written to {args.out}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from captures import open_capture

    try:
        cap = open_capture(args.path)
    except (OSError, ValueError) as e:
        raise SystemExit(f"gradstats inspect: {e}") from e
    print(cap.describe())
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from captures import open_capture
    from gradstats.fitting import fit_capture, summarize_fits

    run = Path(args.path)
    cap_dir = run / "capture" if (run / "capture" / "manifest.json").exists() else run
    out = Path(args.out) if args.out else run / "fits.parquet"
    if out.suffix not in (".parquet", ".csv"):
        raise SystemExit(f"gradstats fit: --out must end in .parquet or .csv, got {out}")
    try:
        loc = "fit" if args.loc == "fit" else float(args.loc)
        fits = fit_capture(open_capture(cap_dir), families=_csv(args.families), every=args.every,
                           layers=_csv(args.layers) if args.layers else None, loc=loc,
                           bootstrap=args.bootstrap, n_jobs=args.jobs, progress=not args.no_progress)
    except ValueError as exc:
        raise SystemExit(f"gradstats fit: {exc}") from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        fits.to_csv(out, index=False)
    else:
        fits.to_parquet(out, index=False)
    print(summarize_fits(fits).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"{len(fits)} fits written to {out}")
    return 0


def _cmd_code(args: argparse.Namespace) -> int:
    from pathlib import Path

    import pandas as pd

    from coders.quantizers import EntropyConstrainedQuantizer, LloydMaxQuantizer, UniformQuantizer
    from coders.report import TOTAL, code_capture, family_comparison

    path = Path(args.path)
    cap_dir = path / "capture" if (path / "capture" / "manifest.json").exists() else path
    run_dir = cap_dir.parent if cap_dir != path or path.name == "capture" else path
    c = 0.5 if args.step_size is None else args.step_size
    if args.quantizer == "uniform":
        opts = {"block_size": args.block_size, "stochastic": args.stochastic}
        quant = (UniformQuantizer(levels=args.levels, clip_quantile=args.clip_quantile, **opts)
                 if args.levels else UniformQuantizer(scale_mult=c, **opts))
    elif args.quantizer == "lloyd-max":
        quant = LloydMaxQuantizer(levels=args.levels or 16, family=args.family)
    elif args.quantizer == "ecsq":
        quant = EntropyConstrainedQuantizer(scale_mult=c, lam=args.lam)
    else:
        raise SystemExit(f"gradstats code: unknown quantizer {args.quantizer!r} (uniform, lloyd-max, ecsq)")
    steps = [int(s) for s in _csv(args.steps)] if args.steps else None
    try:
        df = code_capture(str(cap_dir), quant, models=_csv(args.models), coders=_csv(args.coders),
                          steps=steps, layers=args.layers, raw_baselines=args.raw)
    except ValueError as err:
        raise SystemExit(f"gradstats code: {err}") from err
    out = Path(args.out) if args.out else run_dir / "bits.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        df.to_csv(out, index=False)
    else:
        df.to_parquet(out, index=False)
    fmt = "{:.4f}".format
    with pd.option_context("display.width", 200, "display.max_rows", 500, "display.float_format", fmt):
        tot = df[df["layer"] == TOTAL]
        print(f"quantizer: {quant.name}")
        print("whole model per step (bits per entry incl. side information; ratio vs bf16 = 16 / total):")
        cols = ["step", "model", "coder", "bits_per_entry", "total_bits_per_entry", "entropy", "gap_entropy",
                "ratio_vs_bf16"]
        print(tot[cols].to_string(index=False))
        ent_coders = [k for k in _csv(args.coders) if not k.startswith("zstd")]
        models = set(df["model"])
        ref = next((m for m in ("zi-gennorm", "gennorm") if m in models), None)
        if ent_coders and ref:
            others = [m for m in ("normal", "laplace", "zi-normal", "zi-laplace") if m in models]
            last = df[(df["step"] == df["step"].max()) & (df["layer"] != TOTAL)]
            print(f"\nper layer, last step, {ent_coders[0]}: saving of {ref} over the other families")
            cmp = family_comparison(last, coder=ent_coders[0], reference=ref, others=others)
            print(cmp.to_string(index=False))
    print(f"\nbits written to {out}")
    return 0


def _parse_options(items: list[str] | None) -> dict:
    """`--option key=value` pairs; values parsed as int, float, bool or None when they look like one."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"gradstats train: --option needs key=value, got {item!r}")
        key, value = item.split("=", 1)
        low = value.strip().lower()
        parsed: object = value
        if low in ("true", "false"):
            parsed = low == "true"
        elif low == "none":
            parsed = None
        else:
            for cast in (int, float):
                try:
                    parsed = cast(value)
                    break
                except ValueError:
                    continue
        out[key.strip().replace("-", "_")] = parsed
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    import os

    from coders.runtime.train import train

    result = train(
        args.workload, args.method, args.workers, args.steps, backend=args.backend,
        topology=args.topology, seed=args.seed, lr=args.lr, options=_parse_options(args.option),
        eval_every=args.eval_every, split=args.split, batch_size=args.batch_size, device=args.device,
    )
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return 0
    h = result.history
    evals = h[h["metric"].notna()][["step", "loss", "metric", "bits_up", "bits_down", "bits_wire", "step_s"]]
    print(evals.to_string(index=False))
    for key, value in result.summary().items():
        print(f"{key:>22}: {value}")
    if args.out:
        if args.out.endswith(".csv"):
            h.to_csv(args.out, index=False)
        else:
            h.to_parquet(args.out, index=False)
        print(f"history written to {args.out}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from analysis.compare import Network, compare
    from analysis.report import compare_table, write_compare_figures

    try:
        net = Network(args.bandwidth_gbps, args.latency_us)
    except ValueError as exc:
        raise SystemExit(f"gradstats compare: {exc}") from exc
    lrs = {}
    for item in _csv(args.lr or ""):
        name, _, value = item.partition("=")
        try:
            lrs[name.strip()] = float(value)
        except ValueError:
            raise SystemExit(f"gradstats compare: --lr takes method=value pairs, got {item!r}") from None
    try:
        comp = compare(args.workload, _csv(args.methods), workers=args.workers, steps=args.steps,
                       backend=args.backend, net=net, topology=args.topology, seed=args.seed,
                       target=args.target, eval_every=args.eval_every, lrs=lrs, device=args.device,
                       baseline=args.baseline, progress=lambda m: print(f"training {m} ...", flush=True))
    except ValueError as exc:
        raise SystemExit(f"gradstats compare: {exc}") from exc
    paths = comp.save(args.out)
    write_compare_figures(args.out)
    s = comp.summary
    print(net.describe())
    print(f"compute per step (one worker, measured): {comp.compute_s * 1e3:.3f} ms")
    print(f"target {s['metric_name'].iloc[0]}: {s['target'].iloc[0]:.4g}"
          + ("" if args.target is not None else f" (95% of {args.baseline}'s final)"))
    print(compare_table(s).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"written: {paths['summary']}, {paths['csv']}, {paths['history']}, figures in {args.out}/figures")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from analysis.report import write_report

    try:
        path = write_report(args.path, figures=not args.no_figures)
    except ValueError as exc:
        raise SystemExit(f"gradstats report: {exc}") from exc
    print(f"report written to {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from analysis.demo import DemoConfig, format_result, run_demo

    cfg = DemoConfig.quick(device=args.device) if args.quick else DemoConfig(device=args.device)
    res = run_demo(args.out, cfg, progress=not args.no_progress)
    print(format_result(res))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gradstats", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("capture", help="train a built-in workload and record its gradients")
    c.add_argument("--workload", default="digits-cnn", help="digits-cnn | stdlib-lm | mlp")
    c.add_argument("--steps", type=int, default=300)
    c.add_argument("--every", type=int, default=25, help="record every N optimizer steps")
    c.add_argument("--sample", default=None,
                   help="entries per layer (100000, 1e5) or a fraction (0.01); default: full tensors")
    c.add_argument("--what", default="grad", help="comma list of grad,update")
    c.add_argument("--summary-only", action="store_true", help="store moments + histograms only")
    c.add_argument("--layers", default=None, help="glob of parameter names to record (default: all)")
    c.add_argument("--dtype", default=None, help="store values as this dtype: float16 | bfloat16 | float32")
    c.add_argument("--overwrite", action="store_true", help="replace an existing capture in --out")
    c.add_argument("--device", default="cpu")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", required=True)
    c.set_defaults(func=_cmd_capture)

    i = sub.add_parser("inspect", help="print layers, steps, shapes and sizes of a capture")
    i.add_argument("path")
    i.set_defaults(func=_cmd_inspect)

    f = sub.add_parser("fit", help="fit distribution families per layer and step")
    f.add_argument("path")
    f.add_argument("--families", default="normal,laplace,gennorm,zi-gennorm",
                   help="comma list of normal, laplace, gennorm, studentt and zi-<family>")
    f.add_argument("--every", type=int, default=1, help="use every N-th recorded step")
    f.add_argument("--layers", default=None, help="glob of layer names")
    f.add_argument("--out", default=None, help="parquet or csv; default <path>/fits.parquet")
    f.add_argument("--loc", default="fit", help="'fit' or a fixed location such as 0")
    f.add_argument("--bootstrap", type=int, default=0, help="bootstrap replicates for a beta interval")
    f.add_argument("--jobs", type=int, default=None, help="parallel threads over records")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    f.set_defaults(func=_cmd_fit)

    k = sub.add_parser("code", help="quantize and entropy-code a capture; bits per entry")
    k.add_argument("path")
    k.add_argument("--models", default="histogram,normal,laplace,gennorm,zi-gennorm")
    k.add_argument("--coders", default="ans,huffman")
    k.add_argument("--step-size", type=float, default=None,
                   help="quantizer step as a multiple of the RMS (default 0.5)")
    k.add_argument("--quantizer", default="uniform", help="uniform | lloyd-max | ecsq")
    k.add_argument("--levels", type=int, default=None,
                   help="number of levels (uniform with clipping, lloyd-max)")
    k.add_argument("--clip-quantile", type=float, default=0.999,
                   help="clip at this quantile of |x| (with --levels)")
    k.add_argument("--block-size", type=int, default=None, help="per-block scaling, e.g. 128 or 4096")
    k.add_argument("--stochastic", action="store_true", help="stochastic (unbiased) rounding")
    k.add_argument("--family", default="gennorm", help="family of the Lloyd-Max density")
    k.add_argument("--lam", type=float, default=0.2, help="rate weight of the entropy-constrained quantizer")
    k.add_argument("--layers", default=None, help="glob of layer names")
    k.add_argument("--steps", default=None, help="comma list of steps (default: all)")
    k.add_argument("--raw", action="store_true", help="add zstd on the raw float32/bf16 values")
    k.add_argument("--out", default=None, help="parquet or csv; default <run>/bits.parquet")
    k.set_defaults(func=_cmd_code)

    t = sub.add_parser("train", help="train a workload with a distributed compressor")
    t.add_argument("--workload", default="digits-cnn")
    t.add_argument("--method", default="bf16")
    t.add_argument("--workers", type=int, default=4)
    t.add_argument("--topology", default=None, help="ring | torus | full | star | ws (gossip methods)")
    t.add_argument("--backend", default="sim", help="sim | gloo | nccl")
    t.add_argument("--steps", type=int, default=200)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--eval-every", type=int, default=None, help="evaluate every N steps (default steps/10)")
    t.add_argument("--split", default="iid", help="iid | label-skew")
    t.add_argument("--batch-size", type=int, default=None, help="per worker (default: the workload's)")
    t.add_argument("--device", default=None, help="cpu | cuda (default: cuda for nccl, else cpu)")
    t.add_argument("--option", action="append", default=None, metavar="KEY=VALUE",
                   help="method option, repeatable (e.g. --option rank=2 --option ratio=0.01)")
    t.add_argument("--out", default=None, help="history as .parquet (default) or .csv")
    t.set_defaults(func=_cmd_train)

    m = sub.add_parser("compare", help="end-to-end comparison of compressors")
    m.add_argument("--workload", default="digits-cnn")
    m.add_argument("--methods", default="bf16,powersgd,signum-mv,s3gd-mv,mcm,powergossip")
    m.add_argument("--workers", type=int, default=8)
    m.add_argument("--backend", default="sim")
    m.add_argument("--steps", type=int, default=200)
    m.add_argument("--bandwidth-gbps", type=float, default=10.0)
    m.add_argument("--latency-us", type=float, default=5.0)
    m.add_argument("--topology", default="ring", help="topology of the gossip methods")
    m.add_argument("--eval-every", type=int, default=None)
    m.add_argument("--target", type=float, default=None,
                   help="target metric; default 95%% of the bf16 baseline's final accuracy")
    m.add_argument("--lr", default=None, help="per-method learning rates, e.g. signum-mv=0.01,mcm=0.02")
    m.add_argument("--baseline", default="bf16", help="bf16 | fp16: the 16-bit all-reduce reference "
                   "(trained first when not in --methods)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--device", default="cpu")
    m.add_argument("--out", default="runs/compare")
    m.set_defaults(func=_cmd_compare)

    r = sub.add_parser("report", help="write <run>/report.html")
    r.add_argument("path")
    r.add_argument("--no-figures", action="store_true", help="embed existing figures only; draw none")
    r.set_defaults(func=_cmd_report)

    d = sub.add_parser("demo", help="the main job: capture, fit, code, compare, report")
    d.add_argument("--quick", action="store_true", help="small sizes (used by the tests)")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--device", default="cpu")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
