"""`gradstats demo --quick` runs every stage for real, end to end, and its outputs agree with each other."""

import json
import re

import pandas as pd
import pytest

from analysis.demo import DemoConfig, format_result, run_demo
from analysis.report import SECTIONS
from gradstats.cli import main


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    report = out / "report.html"
    assert f"report: {report.resolve()}" in printed
    assert "SKIPPED" not in printed  # every stage ran for real
    page = report.read_text()
    kinds = set(re.findall(r'<section id="[^"]+" class="section-([^"]+)">', page))
    assert kinds == set(SECTIONS)
    assert "not present" not in page
    cfg = DemoConfig.quick()
    for wl in cfg.workloads:
        unit = out / wl
        fits = pd.read_parquet(unit / "fits.parquet")
        assert set(fits["family"]) == set(cfg.families)
        assert fits.groupby(["step", "layer"])["best"].sum().eq(1).all()  # one best family per record
        bits = pd.read_parquet(unit / "bits.parquet")
        assert {"histogram", "gennorm", "zi-gennorm"} <= set(bits["model"])
        # no model/coder beats the empirical entropy of the symbols it codes (the histogram oracle
        # pays its side information, so its payload alone is the bound to check)
        per_layer = bits[(bits["layer"] != "TOTAL") & bits["error"].fillna("").eq("")]
        symbols = per_layer[~per_layer["model"].str.startswith("raw-")]
        assert (symbols["payload_bits_per_entry"] >= symbols["entropy"] - 1e-6).all()
        # the raw-float codes are lossless and never above the format's width plus their header
        raw = per_layer[per_layer["coder"] == "planes-ans"]
        width = raw["model"].map({"raw-bf16": 16, "raw-fp16": 16, "raw-float32": 32})
        assert (raw["bits_per_entry"] <= width + 8 * 19 / raw["n"]).all()
        rd = pd.read_parquet(unit / "rd.parquet")
        assert {"compressor", "quantizer", "coded", "lossless"} == set(rd["kind"])
        bf16 = rd[rd["name"] == "bf16"]
        assert (bf16["bits_per_entry"] == 16).all() and (bf16["rel_error"] < 1e-2).all()
        assert "uniform + zi-gennorm/ans" in set(rd["name"])  # exact zeros priced by default
        assert (out / wl / "figures" / "beta_heatmap.png").exists()
        assert wl in printed
    summ = pd.read_parquet(out / "compare.parquet")
    assert list(dict.fromkeys(summ["workload"])) == list(cfg.compared) == ["digits-cnn", "stdlib-lm"]
    # every method the issue names
    assert list(cfg.methods) == ["bf16", "powersgd", "signum-mv", "s3gd-mv", "mcm", "powergossip",
                                 "coded-sgd"]
    assert {"qsgd", "coded-sgd"} <= set(DemoConfig().methods)
    seeds = pd.read_parquet(out / "compare_seeds.parquet")
    hist = pd.read_parquet(out / "compare_history.parquet")
    for wl, comp in summ.groupby("workload", sort=False):
        comp = comp.set_index("method")
        # two seeds in the quick demo (time), three in the full one: mean and spread either way
        assert list(comp.index) == list(cfg.methods) and len(cfg.seeds) == 2 and len(DemoConfig().seeds) == 3
        assert (comp["seeds"] == 2).all()
        # the target is set from the baseline's mean over seeds
        base = seeds[(seeds["workload"] == wl) & (seeds["method"] == "bf16")]["final_metric"]
        assert comp.loc["bf16", "final_metric"] == pytest.approx(base.mean())
        rule = 1.05 if comp["metric_name"].iloc[0] == "loss" else 0.95
        assert comp["target"].iloc[0] == pytest.approx(rule * base.mean())
        assert (comp["steps_to_target"].notna() == (comp["reached_seeds"] > 0)).all()
        assert (comp["time_to_target_s"].isna() == comp["steps_to_target"].isna()).all()
        assert comp["allreduce_compatible"].to_dict() == {
            "bf16": True, "powersgd": True, "signum-mv": False, "s3gd-mv": False, "mcm": False,
            "powergossip": False, "coded-sgd": False}
        assert comp.loc["powergossip", "optimizer"] == "local Nesterov SGD, momentum 0.9"
        assert comp.loc["bf16", "up_ratio_vs_bf16"] == 1.0
        assert comp.loc["powersgd", "bits_up"] < comp.loc["bf16", "bits_up"]
        steps = cfg.compare_steps_by_workload.get(wl, cfg.compare_steps)
        assert len(hist[hist["workload"] == wl]) == len(cfg.methods) * len(cfg.seeds) * steps
    digits = summ[summ["workload"] == "digits-cnn"].set_index("method")
    # long enough to learn: the baseline is far above chance (0.1), so the target means something
    assert digits.loc["bf16", "final_metric"] > 0.4
    assert (digits["eval_every"] == cfg.eval_every).all()
    assert ("not reached" in printed) == bool((summ["reached_seeds"] == 0).any())
    # codec time in isolation per layer size, charged in the step-time model with the projections
    codec = pd.read_parquet(out / "codec.parquet")
    assert set(codec["layer"]) == {"workload", "64x64", "256x256"} and (codec["threads"] == 1).all()
    times = pd.read_parquet(out / "step_time.parquet")
    assert {"124M projection", "1.5B projection"} <= set(times["model"])
    assert {1.0, 10.0, 100.0} <= set(times["bandwidth_gbps"])
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["seeds"]["compare"] == [0, 1] and set(prov["seconds"]) >= {"capture", "compare", "report"}
    section = page.split('id="compare"')[1]
    assert "<th>optimizer</th>" in section and "<th>lr</th>" in section
    assert f"evaluated every {cfg.eval_every} steps" in section and "codec (isolated)" in section
    head = page.split('id="summary"')[1].split("</section>")[0]
    assert "best parametric codebook" in head and "histogram oracle" in head and "fastest" in head
    assert "compressor comparison" in printed
    # the headline: best non-degenerate parametric codebook beside the histogram oracle, gap to entropy,
    # and the lossless plane codec of the raw bf16 gradients (issues 10, 16)
    assert printed.count("best parametric codebook (") == len(cfg.workloads)
    assert "histogram oracle" in printed and "% vs entropy" in printed
    assert printed.count("lossless bf16 (plane codec):") == len(cfg.workloads)
    for wl in cfg.workloads:
        bits = pd.read_parquet(out / wl / "bits.parquet")
        tot = bits[(bits["layer"] == "TOTAL") & (bits["model"] == "raw-bf16")].set_index("coder")
        # lossless, and below zstd on the same bytes (dense transformer / CNN gradients)
        assert tot.loc["planes-ans", "bits_per_entry"].max() < 16
        planes, zstd = (tot.loc[c, "bits_per_entry"].to_numpy() for c in ("planes-ans", "zstd-19"))
        assert (planes < zstd).all()
    # what the methods compress (issue 12): recorded, fitted and coded next to the bits they send
    inputs = pd.read_parquet(out / "method_inputs.parquet").set_index("method")
    assert list(inputs.index) == list(cfg.input_methods) == ["powersgd", "signum-mv", "powergossip"]
    assert inputs.loc["powergossip", "input"].startswith("model_diff")
    assert (inputs["coded_histogram_bits_per_entry"] > 0).all() and (inputs["sent_bits_per_entry"] > 0).all()
    assert "what the methods compress" in printed
    inputs_html = page.split('id="inputs"')[1].split("</section>")[0]
    assert "powergossip" in inputs_html and "sent (bits/entry)" in inputs_html


def test_format_result_names_skipped_stages(tmp_path):
    from analysis.demo import DemoResult

    res = DemoResult(tmp_path, tmp_path / "report.html", pd.DataFrame(), pd.DataFrame(), None,
                     {"report": 1.0}, {"code": "ImportError: no module"})
    text = format_result(res)
    assert "SKIPPED code: ImportError" in text and "report 1.0" in text


def test_run_demo_rejects_unknown_workload(tmp_path):
    with pytest.raises(ValueError, match="workload"):
        run_demo(tmp_path, DemoConfig.quick(workloads=("imagenet",)), progress=False)


def test_missing_stage_is_skipped_and_the_others_still_run(tmp_path, monkeypatch):
    import analysis.demo as demo

    def no_coders(*args, **kw):
        raise ImportError("No module named 'coders.report'")

    monkeypatch.setattr(demo, "_code", no_coders)
    cfg = DemoConfig.quick(workloads=("mlp",), capture_steps=4, every=2, families=("normal", "zi-gennorm"),
                           rd_max_layers=1, compare_workloads=("mlp",), methods=("bf16",), compare_steps=2,
                           eval_every=1, seeds=(0,), codec_shapes=((8, 8),), input_methods=())
    res = run_demo(tmp_path, cfg, progress=False)
    assert set(res.skipped) == {"code"} and "coders.report" in res.skipped["code"]
    unit = tmp_path / "mlp"
    assert not (unit / "bits.parquet").exists()
    for name in ("fits.parquet", "rd.parquet", "rd_all.parquet"):
        assert (unit / name).exists()
    assert set(res.seconds) == {"capture", "fit", "rate-distortion", "compare", "report"}
    assert json.loads((tmp_path / "provenance.json").read_text())["seconds"]["report"] > 0
    assert "SKIPPED code: ImportError" in format_result(res)
    page = res.report.read_text()
    assert "bits.parquet not present" in page and 'id="fits-mlp"' in page
