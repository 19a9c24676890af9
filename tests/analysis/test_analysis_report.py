"""report.html reads top-down (headline, provenance, workloads, comparison), embeds its images with
captions, links only sections that exist, and renders without sideways overflow in headless Chromium."""

import base64
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from analysis import compare as cmp
from analysis import provenance
from analysis.render_check import check_page, find_chromium, screenshots
from analysis.report import SECTIONS, write_report
from analysis.step_time import step_times
from analysis.tables import WHOLE_MODEL, bits_table


def _codec(methods):
    rows = []
    for m in methods:
        for layer, n in (("workload", 1000), ("64x64", 4096), ("256x256", 65536)):
            rows.append(
                {
                    "workload": "digits-cnn",
                    "method": m,
                    "layer": layer,
                    "entries": n,
                    "compress_ms": 1e-5 * n,
                    "decompress_ms": 1e-5 * n,
                    "codec_ms": 2e-5 * n,
                    "codec_ns_per_entry": 20.0,
                    "bits_up": 16.0 * n if m == "bf16" else 2.0 * n,
                    "bits_down": 16.0 * n if m == "bf16" else 2.0 * n,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, fits_frame, bits_frame, rd_frame, history_frame):
    """A run with fits, bits, rate-distortion, a two-seed comparison with step times; its report."""
    root = tmp_path_factory.mktemp("report") / "run"
    unit = root / "digits-cnn"
    unit.mkdir(parents=True)
    fits_frame.to_parquet(unit / "fits.parquet")
    bits_frame.to_parquet(unit / "bits.parquet")
    rd_frame.to_parquet(unit / "rd.parquet")
    per_seed, hist = [], []
    for seed in (0, 1):
        h = history_frame.assign(metric=history_frame["metric"] - 0.01 * seed)
        runs = [
            cmp.MethodRun(
                m, g.drop(columns=["method", "time_s"]).reset_index(drop=True), "allreduce", True, 4
            )
            for m, g in h.groupby("method", sort=False)
        ]
        s = cmp.summarize_runs(runs, cmp.Network(), compute_s=0.01, target=0.8)
        per_seed.append(s.assign(seed=seed))
        hist.append(cmp.history_frame(runs, s).assign(seed=seed))
    per_seed = pd.concat(per_seed, ignore_index=True).assign(workload="digits-cnn")
    summary = cmp.aggregate_seeds(per_seed).assign(params=1000, optimizer="SGD", lr=0.1, baseline="bf16")
    codec = _codec(summary["method"])
    times = step_times(summary, codec, model_params=[124_000_000])
    history = pd.concat(hist, ignore_index=True).assign(workload="digits-cnn")
    cmp.Comparison(summary, history, cmp.Network(), 0.01, per_seed, codec, times).save(root)
    provenance.write(
        root,
        provenance.collect(
            command="python -m gradstats demo --out run", seeds=[0, 1], seconds={"fit": 1.5, "report": 2.0}
        ),
    )
    write_report(root)
    return root


def _sections(page):
    return dict(re.findall(r'<section id="([^"]+)" class="section-([^"]+)">', page))


def test_report_reads_top_down(run_dir, bits_frame):
    page = (run_dir / "report.html").read_text()
    secs = _sections(page)
    assert set(secs.values()) == set(SECTIONS) - {"inputs"}  # no method_inputs.parquet in this run
    order = list(secs)
    assert order[:2] == ["summary", "provenance"] and order[-1] == "compare"
    # the headline: the best parametric codebook's whole-model bits, the histogram oracle, the winner
    head = page.split('id="summary"')[1].split("</section>")[0]
    total = bits_table(bits_frame).set_index("layer").loc[WHOLE_MODEL]
    assert f"<b>gennorm/ans</b>: <b>{total['gennorm/ans']:.3f} bits/entry</b>" in head
    assert f"histogram oracle histogram/ans {total['histogram/ans']:.3f}" in head
    assert "fastest to the target" in head and "124M" in head
    prov = page.split('id="provenance"')[1].split("</section>")[0]
    assert "python -m gradstats demo --out run" in prov and "fit 1.5 s" in prov and "numpy" in prov
    # every link points at a section of the page, every section with content is linked
    links = re.findall(r'href="#([^"]+)"', page)
    assert set(links) == set(secs)


def test_report_embeds_captioned_images(run_dir, layers):
    page = (run_dir / "report.html").read_text()
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    # beta heatmap, fit quality, bits per layer, bits vs entropy, gap, bits over steps, rate-distortion;
    # training curves, metric vs time, time vs bandwidth
    assert len(imgs) == 10
    for b in imgs:
        assert base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'src="(?!data:)', page)
    figures = re.findall(
        r'<figure class="(half|full)"><img alt="([^"]+)"[^>]*><figcaption>([^<]+)</figcaption>', page
    )
    assert len(figures) == len(imgs)
    for _, stem, caption in figures:
        assert len(caption) > 60 and caption != stem.replace("_", " ")  # says what is shown, not the file
    assert {w for w, s, _ in figures if s.startswith(("fit_quality", "bits_per_layer", "training"))} == {
        "full"
    }
    for layer in layers:
        assert layer in page
    # the capture is absent: the unit says so, and no capture table is drawn
    cap = page.split('id="capture-digits-cnn"')[1].split("</section>")[0]
    assert "A capture not present" in cap


def test_comparison_tables_show_seeds_codec_and_step_times(run_dir):
    page = (run_dir / "report.html").read_text()
    section = page.split('id="compare"')[1]
    # mean ± std [min, max] over the two seeds; codec measured in isolation; step times at 1/10/100 Gbit/s
    s = pd.read_parquet(run_dir / "compare.parquet").set_index("method")
    b = s.loc["bf16"]
    assert f"{b['final_metric']:.3f} ± {b['final_metric_std']:.3f}" in section
    assert "codec (isolated)" in section and "2/2" in section
    for bw in ("1 Gbit/s", "10 Gbit/s", "100 Gbit/s"):
        assert f"<th>{bw}</th>" in section
    assert (
        "modelled step time, digits-cnn (1k)" in section and "modelled step time, 124M projection" in section
    )
    assert "<th>optimizer</th>" in section and "<th>lr</th>" in section
    # tables scroll inside their own box
    assert section.count('<div class="scroll">') >= 5


def test_report_rejects_empty_dir(tmp_path):
    with pytest.raises(ValueError, match="holds no"):
        write_report(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        write_report(tmp_path / "nope")


@pytest.fixture
def capture_run(tmp_path):
    """A run with a real capture on disk (captures.write_capture) and fit rows for its layers."""
    from scipy import stats

    from captures import write_capture

    rng = np.random.default_rng(3)
    shapes = {"conv.weight": (16, 8, 3, 3), "fc.weight": (10, 64), "fc.bias": (10,)}
    betas = {"conv.weight": 0.7, "fc.weight": 1.2, "fc.bias": 2.0}
    grads = {
        step: {
            k: stats.gennorm(betas[k], scale=1e-3).rvs(size=s, random_state=rng).astype(np.float32)
            for k, s in shapes.items()
        }
        for step in (0, 10)
    }
    unit = tmp_path / "run"
    write_capture(unit / "capture", grads, model="fixture")
    rows = []
    for step, layers in grads.items():
        for layer, x in layers.items():
            x = x.ravel().astype(np.float64)
            b, loc, s = stats.gennorm.fit(x)
            for fam, params in (("normal", (x.mean(), x.std(), np.nan)), ("gennorm", (loc, s, b))):
                rows.append(
                    {
                        "step": step,
                        "layer": layer,
                        "rank": 0,
                        "family": fam,
                        "loc": params[0],
                        "scale": params[1],
                        "beta": params[2],
                        "n": x.size,
                        "bic": 0.0,
                        "best": fam == "gennorm",
                    }
                )
    pd.DataFrame(rows).to_parquet(unit / "fits.parquet")
    return unit


def test_report_with_capture_draws_layer_figures_by_size(capture_run):
    page = write_report(capture_run, figure_layers=2, figure_steps=2).read_text()
    index = json.loads((capture_run / "figures" / "index.json").read_text())
    # the two largest layers (conv.weight 1152 entries, fc.weight 640), last step first
    choices = list(dict.fromkeys(e["choice"] for e in index if e["choice"]))
    assert choices == [
        "conv.weight (1,152 entries), step 10",
        "conv.weight (1,152 entries), step 0",
        "fc.weight (640 entries), step 10",
        "fc.weight (640 entries), step 0",
    ]
    assert [e["file"] for e in index if e["choice"] == choices[0]] == [
        "density_conv_weight_step10.png",
        "tail_conv_weight_step10.png",
        "qq_conv_weight_step10.png",
    ]
    # one chooser with an option per (layer, step); the first choice is shown, the others hidden
    assert len(re.findall(r"<option value=", page)) == 4
    assert page.count('<div class="choice" data-choice="') == 4
    assert page.count('<div class="choice" data-choice="1" style="display:none">') == 1
    cap = page.split('id="capture-run"')[1].split("</section>")[0]
    assert "16x8x3x3" in cap and "fc.bias" in cap
    import torch

    assert f"<b>torch_version</b> {torch.__version__}" in cap and "<b>model</b> fixture" in cap


def test_capture_only_report_links_no_absent_section(capture_run, tmp_path):
    # `gradstats capture --out runs/x; gradstats fit runs/x; gradstats report runs/x`: the run
    # directory is the capture, with fits.parquet written into it; no comparison, no bits
    x = tmp_path / "x"
    shutil.copytree(capture_run / "capture", x)
    shutil.copy(capture_run / "fits.parquet", x / "fits.parquet")
    page = write_report(x).read_text()
    secs = _sections(page)
    assert [k for k in secs if k.startswith("capture")] == ["capture-x"]
    assert "compare" not in secs and 'href="#compare"' not in page and "bits-x" not in secs
    assert set(re.findall(r'href="#([^"]+)"', page)) == set(secs)
    assert "bits.parquet, rd.parquet not present" in page
    # no provenance.json in a plain capture: the report says so and shows its own environment
    assert "did not record its provenance" in page
    assert (x / "figures" / "density_conv_weight_step10.png").exists()


CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed")


@needs_chromium
def test_report_renders_without_overflow_in_headless_chromium(run_dir, tmp_path):
    r = check_page(run_dir / "report.html", width=1400)
    assert r.ok, r.problems()
    assert r.images == 10 and r.client_width <= 1400 and r.height > 2000
    shots = screenshots(run_dir / "report.html", tmp_path / "shots", slice_height=6000)
    assert shots[0].name == "first_screen.png" and len(shots) >= 2
    for p in shots:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_chromium
def test_render_check_fails_on_overflow_and_broken_images(tmp_path):
    wide = tmp_path / "wide.html"
    wide.write_text(
        '<html><body><div style="width:3000px">wide</div>'
        '<div class="scroll" style="overflow-x:auto"><table style="width:5000px"><tr><td>ok</td></tr>'
        "</table></div></body></html>"
    )
    r = check_page(wide, width=1400)
    assert not r.ok and r.scroll_width >= 3000
    assert any("page scrolls sideways" in p for p in r.problems())
    assert not any("table" in e for e in r.overflowing)  # a table scrolling in its own box is fine
    broken = tmp_path / "broken.html"
    broken.write_text('<html><body><img alt="bad" src="data:image/png;base64,AAAA"></body></html>')
    r = check_page(broken, width=1400)
    assert r.broken == ["bad"] and not r.ok


def test_crossover_is_the_highest_bandwidth_where_compression_pays():
    from analysis.report import crossover

    t = pd.DataFrame([{"method": m, "bandwidth_gbps": bw, "speedup_vs_bf16": s}
                      for m, sp in (("bf16", (1.0, 1.0, 1.0)), ("powersgd", (3.0, 1.2, 0.9)),
                                    ("mcm", (4.0, 0.8, 0.5)))
                      for bw, s in zip((0.1, 1.0, 10.0), sp, strict=True)])
    assert crossover(t) == (1.0, "powersgd", 1.2)
    assert crossover(t[t["bandwidth_gbps"] == 10.0]) is None
