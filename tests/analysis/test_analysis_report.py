"""report.html holds every section, embeds its images, and its tables carry the right numbers."""

import base64
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from analysis import compare as cmp
from analysis.report import SECTIONS, write_report


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, fits_frame, bits_frame, rd_frame, history_frame):
    """A run directory with fits, bits, rate-distortion and a comparison, and its report written once."""
    root = tmp_path_factory.mktemp("report") / "run"
    unit = root / "digits-cnn"
    unit.mkdir(parents=True)
    fits_frame.to_parquet(unit / "fits.parquet")
    bits_frame.to_parquet(unit / "bits.parquet")
    rd_frame.to_parquet(unit / "rd.parquet")
    runs = [cmp.MethodRun(m, g.drop(columns=["method", "time_s"]).reset_index(drop=True), "allreduce",
                          True, 4) for m, g in history_frame.groupby("method")]
    summary = cmp.summarize_runs(runs, cmp.Network(), compute_s=0.01)
    cmp.Comparison(summary, cmp.history_frame(runs, summary), cmp.Network(), 0.01).save(root)
    write_report(root)
    return root


def _sections(page):
    return dict(re.findall(r'<section id="([^"]+)" class="section-([^"]+)">', page))


def test_report_has_every_section(run_dir, layers):
    page = (run_dir / "report.html").read_text()
    secs = _sections(page)
    assert set(secs.values()) == set(SECTIONS)
    assert "capture-digits-cnn" in secs and "compare" in secs
    # the capture is absent in this run: the section says so instead of vanishing
    cap = page.split('id="capture-digits-cnn"')[1].split("</section>")[0]
    assert "not present" in cap
    # every figure the data supports is embedded, decodable PNG, and no image is linked from disk
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    # beta heatmap, bits per layer, rate-distortion, metric vs bits / time, time vs bandwidth
    assert len(imgs) == 6
    for b in imgs:
        assert base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'src="(?!data:)', page)
    for layer in layers:
        assert layer in page
    assert "alpha-beta network" in page and "signum-mv" in page


def test_report_rejects_empty_dir(tmp_path):
    with pytest.raises(ValueError, match="holds no"):
        write_report(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        write_report(tmp_path / "nope")


CHROMIUM = shutil.which("chromium", path="/usr/bin")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed")
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    path = run_dir / "report.html"
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1280,2000", path.as_uri()], check=True, timeout=120,
                   capture_output=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


@pytest.fixture
def capture_run(tmp_path):
    """A run with a real capture on disk (captures.write_capture) and fit rows for its layers."""
    from scipy import stats

    from captures import write_capture

    rng = np.random.default_rng(3)
    shapes = {"conv.weight": (16, 8, 3, 3), "fc.weight": (10, 64), "fc.bias": (10,)}
    betas = {"conv.weight": 0.7, "fc.weight": 1.2, "fc.bias": 2.0}
    grads = {step: {k: stats.gennorm(betas[k], scale=1e-3).rvs(size=s, random_state=rng).astype(np.float32)
                    for k, s in shapes.items()} for step in (0, 10)}
    unit = tmp_path / "run"
    write_capture(unit / "capture", grads, model="fixture")
    rows = []
    for step, layers in grads.items():
        for layer, x in layers.items():
            x = x.ravel().astype(np.float64)
            b, loc, s = stats.gennorm.fit(x)
            for fam, params in (("normal", (x.mean(), x.std(), np.nan)), ("gennorm", (loc, s, b))):
                rows.append({"step": step, "layer": layer, "rank": 0, "family": fam, "loc": params[0],
                             "scale": params[1], "beta": params[2], "n": x.size, "bic": 0.0,
                             "best": fam == "gennorm"})
    pd.DataFrame(rows).to_parquet(unit / "fits.parquet")
    return unit


def test_report_with_capture_draws_layer_figures(capture_run):
    page = write_report(capture_run).read_text()
    figs = sorted(p.name for p in (capture_run / "figures").glob("*.png"))
    # the largest layer (conv.weight) at the last step gets density, tail and QQ figures
    assert figs == ["beta_heatmap.png", "density_conv_weight.png", "qq_conv_weight.png",
                    "tail_conv_weight.png"]
    cap = page.split('id="capture-run"')[1].split("</section>")[0]
    assert "16x8x3x3" in cap and "fc.bias" in cap and "not present" not in cap
    # the manifest's provenance (captures.store writes torch_version, not torch) is shown
    import torch

    assert f"<b>torch_version</b>: {torch.__version__}" in cap and "<b>model</b>: fixture" in cap
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 4


def test_report_on_a_capture_directory_itself(capture_run, tmp_path):
    # `gradstats capture --out runs/x; gradstats fit runs/x; gradstats report runs/x`: the run
    # directory is the capture, with fits.parquet written into it
    x = tmp_path / "x"
    shutil.copytree(capture_run / "capture", x)
    shutil.copy(capture_run / "fits.parquet", x / "fits.parquet")
    page = write_report(x).read_text()
    secs = _sections(page)
    assert [k for k in secs if k.startswith("capture")] == ["capture-x"]
    cap = page.split('id="capture-x"')[1].split("</section>")[0]
    assert "16x8x3x3" in cap and "not present" not in cap
    assert (x / "figures" / "density_conv_weight.png").exists()
