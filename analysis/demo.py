"""`gradstats demo`: the main job, capture -> fit -> code -> compare -> report, in one command.

On the built-in workloads (the character transformer `stdlib-lm` and the CNN `digits-cnn`):
record full per-layer gradients during real training, fit Normal / Laplace / GenNorm per layer
and step, entropy-code the quantized gradients (bits per entry per model and coder), place the
compressors and quantizer + codebook pairs on a rate-distortion plane, train a short compressor
comparison under the alpha-beta network model, and write `report.html`. `DemoConfig.quick()` is
the small version the test suite runs.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import provenance
from analysis.compare import Comparison, Network, compare
from analysis.rate_distortion import aggregate_rd, rate_distortion
from analysis.report import write_report
from analysis.tables import WHOLE_MODEL, bits_table, compare_table, headline
from captures.progress import Progress, open_bar
from coders.wire import BF16_BITS

# the comparison columns `gradstats demo` prints (the report and compare.csv have them all)
PRINTED_COMPARE_COLUMNS = ("method", "allreduce_compatible", "final_metric", "final_metric_std",
                           "steps_to_target", "bits_up", "up_ratio_vs_bf16", "compress_s", "decompress_s",
                           "speedup_vs_bf16")
PRINTED_BANDWIDTHS = (1.0, 10.0, 100.0)


@dataclass
class DemoConfig:
    """Sizes of each stage of the demo (defaults: a few minutes on 2 CPU cores)."""

    workloads: tuple[str, ...] = ("stdlib-lm", "digits-cnn")
    capture_steps: int = 200
    every: int = 50
    # zero-inflated variants: real gradients hold exact zeros (dead ReLUs, zero input pixels)
    families: tuple[str, ...] = ("normal", "laplace", "gennorm", "zi-normal", "zi-laplace", "zi-gennorm")
    models: tuple[str, ...] = ("histogram", "normal", "laplace", "gennorm", "zi-gennorm")
    coders: tuple[str, ...] = ("ans", "huffman")
    rd_steps: int = 1  # rate-distortion on the last `rd_steps` recorded steps
    rd_max_layers: int | None = None  # None: every layer; else the largest ones
    rd_models: tuple[str, ...] = ("gennorm", "zi-gennorm", "laplace", "normal")
    compare_workload: str = "digits-cnn"  # used when compare_workloads is None
    compare_workloads: tuple[str, ...] | None = ("digits-cnn", "stdlib-lm")
    methods: tuple[str, ...] = ("bf16", "powersgd", "signum-mv", "s3gd-mv", "mcm", "powergossip", "qsgd",
                                "coded-sgd")
    # what these methods put through their compressors is recorded, fitted and coded (issue 12)
    input_methods: tuple[str, ...] = ("powersgd", "signum-mv", "powergossip")
    input_steps: int = 40
    lrs: dict[str, float] = field(default_factory=dict)  # per-method lr overrides (else the method's default)
    workers: int = 4
    compare_steps: int = 150
    compare_steps_by_workload: dict[str, int] = field(default_factory=dict)  # overrides compare_steps
    eval_every: int = 15
    seeds: tuple[int, ...] = (0, 1, 2)  # every method trains once per seed: mean and spread
    network: Network = field(default_factory=Network)
    # projected model sizes of the step-time model (per-entry bits and codec cost of the largest layer)
    model_params: tuple[int, ...] = (124_000_000, 1_500_000_000)
    codec_shapes: tuple[tuple[int, int], ...] = ((64, 64), (256, 256), (1024, 1024))
    codec_steps: int = 10
    codec_warmup: int = 3
    figure_layers: int = 3  # per-layer figures for the largest layers ...
    figure_steps: int = 2  # ... at this many recorded steps
    seed: int = 0
    device: str = "cpu"
    command: str | None = None  # recorded in provenance.json (default: this process's command line)

    @property
    def compared(self) -> tuple[str, ...]:
        """The workloads of the compressor comparison."""
        return tuple(self.compare_workloads) if self.compare_workloads else (self.compare_workload,)

    @classmethod
    def quick(cls, **kw) -> DemoConfig:
        """Small sizes for the test suite: every stage runs, on little data."""
        base = {"capture_steps": 20, "every": 10, "families": ("normal", "laplace", "gennorm", "zi-gennorm"),
                "models": ("histogram", "gennorm", "zi-gennorm"),
                "coders": ("ans",), "rd_max_layers": 3, "rd_models": ("gennorm", "zi-gennorm"),
                # every method of the comparison; digits-cnn needs ~50 steps to leave chance (0.1),
                # stdlib-lm is compared on a few steps only (the code path, not a result)
                "workers": 2, "compare_steps": 60, "compare_steps_by_workload": {"stdlib-lm": 10},
                "eval_every": 10, "codec_shapes": ((64, 64), (256, 256)), "codec_steps": 3, "codec_warmup": 1,
                "figure_layers": 1, "figure_steps": 1, "seeds": (0, 1),
                "methods": ("bf16", "powersgd", "signum-mv", "s3gd-mv", "mcm", "powergossip", "coded-sgd"),
                "input_steps": 6}
        base.update(kw)
        return cls(**base)


@dataclass
class DemoResult:
    """Where the demo wrote its outputs, the headline numbers and the seconds each stage took."""

    run_dir: Path
    report: Path
    headline: pd.DataFrame
    totals: pd.DataFrame
    comparison: pd.DataFrame | None
    seconds: dict[str, float]
    skipped: dict[str, str] = field(default_factory=dict)  # stage -> why (its module is missing)
    step_times: pd.DataFrame | None = None  # modelled step time per method, model size and bandwidth
    codebooks: pd.DataFrame | None = None  # best parametric codebook vs histogram
    inputs: pd.DataFrame | None = None  # what each method compresses: its bits sent vs coded size


# the table each per-workload stage writes into the workload's directory (ARCHITECTURE.md)
UNIT_FILES = {"fit": "fits.parquet", "code": "bits.parquet", "rate-distortion": "rd.parquet"}


class _Skipped(Exception):
    pass


def _stage(seconds: dict, skipped: dict, name: str, fn: Callable, *args, **kw):
    """Run one stage, timing it; a stage whose module is not installed is recorded as skipped."""
    t0 = time.perf_counter()
    try:
        out = fn(*args, **kw)
    except ImportError as exc:
        skipped[name] = f"{type(exc).__name__}: {exc}"
        raise _Skipped(name) from exc
    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
    return out


def _fit(cap, cfg: DemoConfig, progress: Progress) -> pd.DataFrame:
    from gradstats import fit_capture

    return fit_capture(cap, families=list(cfg.families), progress=progress)


def _code(cap, cfg: DemoConfig, progress: Progress) -> pd.DataFrame:
    from coders.report import code_capture

    return code_capture(cap, models=list(cfg.models), coders=list(cfg.coders), raw_baselines=True)


def _rd(cap, cfg: DemoConfig, progress: Progress) -> pd.DataFrame:
    layers = list(cap.layers)
    if cfg.rd_max_layers is not None:
        size = {layer: int(np.prod(cap.shapes[layer])) for layer in layers}
        layers = sorted(layers, key=lambda k: -size[k])[: cfg.rd_max_layers]
    frames = []
    for step in cap.steps[-cfg.rd_steps:]:
        tensors = {layer: cap.get(layer, step) for layer in layers}
        frames.append(rate_distortion(tensors, models=cfg.rd_models).assign(step=step))
    return pd.concat(frames, ignore_index=True)


def run_demo(out: str | Path = "runs/demo", config: DemoConfig | None = None, progress: Progress = True,
             ) -> DemoResult:
    """Run every stage into `out` and return where the report is and the headline numbers.

    `progress` (`captures.progress`): a bar over the stages, and the same factory handed to the
    stages that draw their own (capture, fit, report).
    """
    from captures.workloads import capture_workload

    cfg = config or DemoConfig()
    started = _now()
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    n_stages = 4 * len(cfg.workloads) + len(cfg.compared) + 1 + bool(cfg.input_methods)
    bar = open_bar(progress, total=n_stages, desc="gradstats demo", unit="stage")

    def tick(what: str) -> None:
        bar.set_postfix_str(what)
        bar.update(1)

    skipped: dict[str, str] = {}
    heads, totals, books = [], [], []
    for wl in cfg.workloads:
        unit = root / wl
        bar.set_postfix_str(f"capture {wl}")
        try:
            cap = _stage(seconds, skipped, "capture", capture_workload, wl, out_dir=unit / "capture",
                         steps=cfg.capture_steps, every=cfg.every, device=cfg.device, seed=cfg.seed,
                         overwrite=True, progress=progress)
        except _Skipped:
            bar.update(4)
            continue
        tick(f"captured {wl}")
        tables: dict[str, pd.DataFrame | None] = {}
        for name, fn in (("fit", _fit), ("code", _code), ("rate-distortion", _rd)):
            try:
                tables[name] = _stage(seconds, skipped, name, fn, cap, cfg, progress)
                tables[name].to_parquet(unit / UNIT_FILES[name], index=False)
            except _Skipped:
                tables[name] = None
            tick(f"{name} {wl}")
        fits, bits, rd = tables["fit"], tables["code"], tables["rate-distortion"]
        if rd is not None:
            aggregate_rd(rd).to_parquet(unit / "rd_all.parquet", index=False)
        if fits is not None or bits is not None:
            heads.append(headline(fits, bits, cap.summary()).assign(workload=wl))
        if bits is not None:
            totals.append(_totals(bits, cap).assign(workload=wl))
            books.append(_codebooks(bits).assign(workload=wl))

    inputs = None
    if cfg.input_methods:
        bar.set_postfix_str("what the methods compress")
        try:
            inputs = _stage(seconds, skipped, "method inputs", method_inputs, cfg.compared[0],
                            cfg.input_methods, root / "inputs", workers=cfg.workers, steps=cfg.input_steps,
                            seed=cfg.seed, device=cfg.device)
            inputs.to_parquet(root / "method_inputs.parquet", index=False)
        except _Skipped:
            pass
        tick("recorded what the methods compress")
    summary, times, comps = None, None, []
    for wl in cfg.compared:
        bar.set_postfix_str(f"compare on {wl}")
        try:
            steps = cfg.compare_steps_by_workload.get(wl, cfg.compare_steps)
            comps.append(_stage(seconds, skipped, "compare", compare, wl, cfg.methods, workers=cfg.workers,
                                steps=steps, net=cfg.network,
                                seed=cfg.seed, seeds=cfg.seeds, eval_every=cfg.eval_every, device=cfg.device,
                                lrs={m: lr for m, lr in cfg.lrs.items() if m in cfg.methods},
                                model_params=cfg.model_params, codec_shapes=cfg.codec_shapes,
                                codec_steps=cfg.codec_steps, codec_warmup=cfg.codec_warmup))
        except _Skipped:
            pass
        tick(f"compared {wl}")
    if comps:
        comp = Comparison.concat(comps)
        comp.save(root)
        summary, times = comp.summary, comp.step_times
    # written before the report so that the report shows it; the report's own time is added after
    _write_provenance(root, cfg, seconds, started)
    report = _stage(seconds, skipped, "report", write_report, root, figure_layers=cfg.figure_layers,
                    figure_steps=cfg.figure_steps, progress=progress)
    _write_provenance(root, cfg, seconds, started)
    tick("report written")
    bar.close()
    return DemoResult(root, report, pd.concat(heads, ignore_index=True) if heads else pd.DataFrame(),
                      pd.concat(totals, ignore_index=True) if totals else pd.DataFrame(), summary,
                      seconds, skipped=skipped, step_times=times,
                      codebooks=pd.concat(books, ignore_index=True) if books else None, inputs=inputs)


def _now():
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc)


def _write_provenance(root: Path, cfg: DemoConfig, seconds: dict, started) -> None:
    """provenance.json: command, commit, versions, machine, seeds and the seconds of each stage so far."""
    settings = {"workloads": ",".join(cfg.workloads), "compared": ",".join(cfg.compared),
                "methods": ",".join(cfg.methods), "workers": cfg.workers, "capture_steps": cfg.capture_steps,
                "compare_steps": cfg.compare_steps, **{f"compare_steps[{k}]": v
                                                       for k, v in cfg.compare_steps_by_workload.items()},
                "network": f"{cfg.network.bandwidth_gbps:g} Gbit/s, {cfg.network.latency_us:g} us",
                "model_params": ",".join(map(str, cfg.model_params)), "device": cfg.device}
    seeds = {"capture": cfg.seed, "compare": list(cfg.seeds)}
    provenance.write(root, provenance.collect(command=cfg.command, seeds=seeds, seconds=seconds,
                                              config=settings, started=started))


def _codebooks(bits: pd.DataFrame) -> pd.DataFrame:
    """The last recorded step's codebook headline (`coders.selection.codebook_headline`, ANS) plus the
    lossless plane codec of the raw bf16 gradients (whole model)."""
    from coders.report import TOTAL
    from coders.selection import codebook_headline

    head = codebook_headline(bits, "ans")
    head = head[head["step"] == head["step"].max()].reset_index(drop=True)
    raw = bits[(bits["layer"] == TOTAL) & (bits["model"] == "raw-bf16") & (bits["coder"] == "planes-ans")
               & (bits["step"] == head["step"].iloc[0])]
    head["lossless_bf16_bits_per_entry"] = float(raw["bits_per_entry"].iloc[0]) if len(raw) else np.nan
    return head


def method_inputs(workload: str, methods: tuple[str, ...], out: Path, *, workers: int, steps: int,
                  seed: int = 0, device: str = "cpu") -> pd.DataFrame:
    """What each method compresses (issue 12): train it with `capture=`, then fit and code the recorded
    compressor input (gossip methods: the neighbour model differences) of the last recorded step.

    One row per method: the bits it sends per entry of the model (uplink), the GenNorm beta of its
    input, and the bits an entropy-coded version of that input needs (uniform c = 0.5 x RMS quantizer,
    best parametric codebook and histogram, ANS; and the lossless bf16 plane codec).
    """
    from coders.report import TOTAL, code_capture
    from coders.runtime.capture import open_method_capture
    from coders.runtime.train import train
    from gradstats import fit_capture

    rows = []
    for m in methods:
        cap_dir = out / m
        if cap_dir.exists():  # the demo's own output of an earlier run: recorded afresh
            shutil.rmtree(cap_dir)
        res = train(workload, m, workers=workers, steps=steps, seed=seed, device=device, capture=cap_dir,
                    capture_every=max(1, steps // 2), topology="ring" if _needs_topology(m) else None)
        reader = open_method_capture(cap_dir)
        kind = "model_diff" if "model_diff" in reader.kinds else "compressor_input"
        nb = reader.neighbours(0)[0] if kind == "model_diff" else None
        cap = reader.capture(kind, nb)
        step = cap.steps[-1]
        bits = code_capture(cap, models=["histogram", "gennorm", "zi-gennorm"], coders=["ans"], steps=[step],
                            raw_baselines=True, progress=False)
        tot = bits[bits["layer"] == TOTAL].set_index("model")
        # the shape of the continuous part: the zero atom apart, centred at 0 as gradients are
        fits = fit_capture(cap, families=["zi-gennorm"], steps=[step], goodness=False, progress=False, jobs=1,
                           loc=0.0, ranks=None)
        fits = fits[~fits["flags"].astype(str).str.contains("beta_at|too_small", regex=True)]
        per_rank = fits.groupby("rank")["beta"].median()  # does every worker compress the same shape?
        n = sum(int(np.prod(s)) for s in cap.shapes.values())
        sent = float(res.history["bits_up"].iloc[-5:].mean())
        rows.append({"method": m, "input": kind if nb is None else f"{kind} (to neighbour {nb})",
                     "step": step, "entries": n, "sent_bits_per_entry": sent / n,
                     "gennorm_beta_median": float(fits["beta"].median()) if len(fits) else np.nan,
                     "beta_rank_min": float(per_rank.min()) if len(per_rank) else np.nan,
                     "beta_rank_max": float(per_rank.max()) if len(per_rank) else np.nan,
                     "coded_parametric_bits_per_entry": float(tot.loc["best-parametric", "bits_per_entry"]),
                     "parametric": str(tot.loc["best-parametric", "selected"]),
                     "coded_histogram_bits_per_entry": float(tot.loc["histogram", "bits_per_entry"]),
                     "lossless_bf16_bits_per_entry": float(bits[(bits["layer"] == TOTAL)
                                                                & (bits["model"] == "raw-bf16")
                                                                & (bits["coder"] == "planes-ans")
                                                                ]["bits_per_entry"].iloc[0])})
    return pd.DataFrame(rows)


def _needs_topology(method: str) -> bool:
    from coders.algorithms.registry import method_class

    return method_class(method).needs_topology


def _totals(bits: pd.DataFrame, cap) -> pd.DataFrame:
    """The whole-model row of the bits table (entries-weighted over layers)."""
    b = bits_table(bits, cap.summary())
    return b[b["layer"] == WHOLE_MODEL].drop(columns=["layer"])


def format_result(res: DemoResult) -> str:
    """Text printed at the end of `gradstats demo`: where the report is and the headline numbers."""
    lines = [f"report: {res.report.resolve()}", ""]
    groups = res.headline.groupby("workload", sort=False) if len(res.headline) else []
    for wl, h in groups:
        lines.append(f"== {wl}: best family per layer, GenNorm beta, GenNorm-ANS bits/entry (bf16 = 16)")
        show = h.drop(columns=["workload", *[c for c in h.columns if c.endswith("vs bf16")]])
        lines.append(show.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        cb = res.codebooks[res.codebooks["workload"] == wl] if res.codebooks is not None else None
        if cb is not None and len(cb):
            r = cb.iloc[0]
            lines.append(f"   whole model, step {int(r['step'])}, ANS at c = 0.5 x RMS: best parametric "
                         f"codebook ({r['parametric']}) {r['parametric_bits_per_entry']:.3f} bits/entry "
                         f"({r['parametric_ratio_vs_bf16']:.2f}x vs bf16, "
                         f"{100 * r['parametric_gap_entropy']:+.1f}% vs entropy {r['entropy']:.3f}); "
                         f"histogram oracle {r['histogram_bits_per_entry']:.3f} "
                         f"({100 * r['histogram_gap_entropy']:+.1f}%)")
            raw = r["lossless_bf16_bits_per_entry"]
            if np.isfinite(raw):
                lines.append(f"   lossless bf16 (plane codec): {raw:.2f} bits/entry, {BF16_BITS / raw:.2f}x; "
                             f"quantized at c = 0.5: {r['parametric_total_bits_per_entry']:.2f} bits/entry "
                             "(quantizer side bits included)")
        lines.append("")
    if res.comparison is not None:
        c = res.comparison
        groups = c.groupby("workload", sort=False) if "workload" in c else [("", c)]
        for wl, g in groups:
            first = g.iloc[0]
            rule = "105% of" if first["metric_name"] == "loss" else "95% of"
            seeds = f", {int(first['seeds'])} seeds" if "seeds" in g else ""
            lines.append(f"== compressor comparison ({wl}, {int(first['workers'])} workers, "
                         f"{int(first['steps'])} steps{seeds}, {first['bandwidth_gbps']:g} Gbit/s, "
                         f"{first['latency_us']:g} us; target {first['metric_name']} {first['target']:.3f} = "
                         f"{rule} {first.get('baseline', 'bf16')}'s final, mean over seeds)")
            lines.append(compare_table(g, PRINTED_COMPARE_COLUMNS).to_string(
                index=False, float_format=lambda v: f"{v:.4g}"))
            if res.step_times is not None and len(res.step_times):
                st = res.step_times[(res.step_times["workload"] == wl)
                                    & res.step_times["bandwidth_gbps"].isin(PRINTED_BANDWIDTHS)]
                t = 1e3 * st.pivot_table(index="method", columns=["model", "bandwidth_gbps"],
                                         values="iter_overlap_s", sort=False)
                t.columns = [f"{m.split(' (')[0].removesuffix(' projection')}@{b:g}G" for m, b in t.columns]
                lines.append("   modelled ms per step (codec measured in isolation; every model size and "
                             "bandwidth in step_time.parquet):")
                lines.append(t.to_string(float_format=lambda v: f"{v:.4g}"))
            lines.append("")
    if res.inputs is not None and len(res.inputs):
        lines.append("== what the methods compress (last recorded step; coded: uniform c = 0.5 x RMS, ANS)")
        cols = {"method": "method", "input": "input", "gennorm_beta_median": "ZI-GenNorm beta (median)",
                "beta_rank_min": "beta min over workers", "beta_rank_max": "max",
                "sent_bits_per_entry": "sent bits/entry",
                "coded_parametric_bits_per_entry": "coded parametric",
                "coded_histogram_bits_per_entry": "coded histogram",
                "lossless_bf16_bits_per_entry": "lossless bf16"}
        lines.append(res.inputs[list(cols)].rename(columns=cols).to_string(
            index=False, float_format=lambda v: f"{v:.3f}"))
        lines.append("")
    for name, why in res.skipped.items():
        lines.append(f"SKIPPED {name}: {why}")
    lines.append("seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in res.seconds.items()))
    return "\n".join(lines)
