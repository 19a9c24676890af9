"""fit_capture over a real capture directory (captures.write_capture): serial, process pool, CUDA;
summarize_fits; and the `gradstats fit` CLI."""

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

from captures import write_capture
from gradstats import fit_all, fit_capture, open_capture, summarize_fits
from gradstats.cli import main

CONTRACT = ["step", "layer", "rank", "family", "beta", "loc", "scale", "loglik", "aic", "bic", "n", "ks",
            "ad", "w1", "nll_bits", "tail_log10_1e-02", "tail_log10_1e-03", "tail_log10_1e-04", "best",
            "flags"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    grads = {}
    for step in (0, 5, 10, 15):
        conv = st.gennorm.rvs(0.7, scale=1e-3, size=(32, 8, 3, 3), random_state=rng).astype(np.float32)
        conv[:4] = 0.0  # dead filters: exact zeros
        grads[step] = {"conv.weight": conv,
                       "fc.weight": rng.laplace(0, 1e-2, size=(120, 40)).astype(np.float32),
                       "fc.bias": rng.normal(0, 1e-2, size=(400,)).astype(np.float32)}
    root = tmp_path_factory.mktemp("run")
    write_capture(root / "capture", grads)
    return root


def test_fit_capture_rows_columns_and_values(run_dir):
    cap = open_capture(run_dir / "capture")
    fams = ["normal", "laplace", "gennorm", "zi-gennorm"]
    df = fit_capture(cap, families=fams, every=2, progress=False, jobs=1)
    assert [c for c in CONTRACT if c not in df.columns] == []
    assert sorted(df["step"].unique()) == [0, 10]
    assert len(df) == 2 * 3 * len(fams)
    # one best per record
    assert (df.groupby(["step", "layer", "rank"])["best"].sum() == 1).all()
    # identical to fitting the record directly
    one = df[(df["step"] == 10) & (df["layer"] == "fc.weight")].reset_index(drop=True)
    ref = fit_all(cap.get("fc.weight", 10), fams)
    for col in ("beta", "scale", "loglik", "ks", "tail_log10_1e-02"):
        np.testing.assert_allclose(one[col], ref[col], rtol=1e-12, equal_nan=True)
    conv = df[(df["layer"] == "conv.weight") & (df["step"] == 0)].set_index("family")
    assert conv.loc["zi-gennorm", "pi"] == pytest.approx(0.125, abs=0.002)  # 4 of 32 filters dead
    assert conv.loc["zi-gennorm", "best"]
    assert conv.loc["zi-gennorm", "beta"] == pytest.approx(0.7, rel=0.1)
    summary = summarize_fits(df).set_index("layer")
    assert summary.loc["conv.weight", "best"] == "zi-gennorm"
    assert summary.loc["conv.weight", "best_share"] == 1
    # the summary's beta is the winning zi-gennorm's, not the plain gennorm's (driven to its bound)
    assert summary.loc["conv.weight", "beta"] == pytest.approx(0.7, rel=0.1)
    assert summary.loc["conv.weight", "records"] == 2


def test_fit_capture_process_pool_equals_serial_to_the_last_bit(run_dir):
    fams = ["normal", "laplace", "gennorm", "zi-gennorm"]
    a = fit_capture(run_dir, families=fams, progress=False, jobs=1)
    b = fit_capture(run_dir, families=fams, progress=False, jobs=2)
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"), check_exact=True)
    assert len(a) == 4 * 3 * len(fams)
    # the old keyword still works
    c = fit_capture(run_dir, families=["laplace"], layers="fc.bias", progress=False, n_jobs=1)
    assert len(c) == 4
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        fit_capture(run_dir, progress=False, jobs=0)


def test_fit_capture_selects_layers_and_checks_arguments(run_dir):
    a = fit_capture(run_dir, families=["laplace", "gennorm"], layers="fc.*", progress=False)
    b = fit_capture(run_dir, families=["laplace", "gennorm"], layers=["fc.*"], progress=False)
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))
    assert set(a["layer"]) == {"fc.weight", "fc.bias"}
    with pytest.raises(ValueError, match="no layer matches"):
        fit_capture(run_dir, layers="decoder.*", progress=False)
    with pytest.raises(ValueError, match="not in the capture"):
        fit_capture(run_dir, steps=[3], progress=False)
    with pytest.raises(ValueError, match="every"):
        fit_capture(run_dir, every=0, progress=False)


def test_fit_capture_bootstrap_interval_covers_estimate(run_dir):
    df = fit_capture(run_dir, families=["gennorm"], layers="fc.weight", steps=[5], bootstrap=30,
                     progress=False)
    row = df.iloc[0]
    assert row["beta_lo"] < row["beta"] < row["beta_hi"]
    # the interval is about 4 standard errors wide
    assert 1.5 < (row["beta_hi"] - row["beta_lo"]) / row["beta_se"] < 8


def test_cli_fit_writes_parquet_and_csv(run_dir, capsys):
    assert main(["fit", str(run_dir), "--families", "normal,laplace,gennorm", "--no-progress"]) == 0
    out = capsys.readouterr().out
    df = pd.read_parquet(run_dir / "fits.parquet")
    assert len(df) == 4 * 3 * 3 and "fits written to" in out
    summary = summarize_fits(df)
    assert list(summary["layer"]) == ["conv.weight", "fc.weight", "fc.bias"]
    assert summary.set_index("layer").loc["fc.weight", "best"] == "laplace"
    for layer in summary["layer"]:
        assert layer in out
    csv = run_dir / "fits.csv"
    assert main(["fit", str(run_dir / "capture"), "--out", str(csv), "--loc", "0", "--layers", "fc.bias",
                 "--no-progress"]) == 0
    back = pd.read_csv(csv)
    assert set(back["layer"]) == {"fc.bias"} and (back["loc"] == 0).all()
    with pytest.raises(SystemExit, match="parquet or .csv"):
        main(["fit", str(run_dir), "--out", str(run_dir / "fits.txt")])
    with pytest.raises(SystemExit, match="unknown family"):
        main(["fit", str(run_dir), "--families", "cauchy", "--no-progress"])


def test_fit_capture_all_ranks_and_a_missing_record(tmp_path):
    rng = np.random.default_rng(1)
    for rank in (0, 1):
        grads = {0: {"w": rng.laplace(0, 1 + rank, 3000).astype(np.float32),
                     "b": rng.normal(size=50).astype(np.float32)},
                 1: {"w": rng.laplace(0, 1 + rank, 3000).astype(np.float32)}}  # no "b" at step 1
        write_capture(tmp_path, grads, rank=rank, world_size=2)
    df = fit_capture(tmp_path, families=["laplace"], ranks=None, progress=False)
    keys = sorted(set(zip(df["step"], df["layer"], df["rank"], strict=True)))
    assert keys == [(s, name, r) for s in (0, 1) for name in ("b", "w") for r in (0, 1)]
    w = df[df["layer"] == "w"].set_index(["step", "rank"])["scale"]
    assert w.loc[(0, 1)] == pytest.approx(2.0, rel=0.1) and w.loc[(0, 0)] == pytest.approx(1.0, rel=0.1)
    missing = df[(df["layer"] == "b") & (df["step"] == 1)]
    assert missing["flags"].str.startswith("no_record").all() and missing["scale"].isna().all()
    # the summary counts the records the capture holds: "b" has 2 (step 0, two ranks), "w" 4
    records = summarize_fits(df).set_index("layer")["records"]
    assert records.to_dict() == {"w": 4, "b": 2}


def test_a_layer_too_small_for_a_shape_gets_a_flag_and_no_beta(tmp_path):
    rng = np.random.default_rng(2)
    grads = {s: {"w": rng.laplace(0, 1e-2, 5000).astype(np.float32),
                 "bias": rng.normal(0, 1e-2, 10).astype(np.float32)} for s in (0, 1, 2)}
    write_capture(tmp_path, grads)
    df = fit_capture(tmp_path, families=["normal", "laplace", "gennorm", "zi-gennorm"], progress=False)
    bias = df[df["layer"] == "bias"].set_index(["step", "family"])
    for fam in ("gennorm", "zi-gennorm"):
        rows = bias.xs(fam, level="family")
        assert rows["beta"].isna().all() and rows["bic"].isna().all() and not rows["best"].any()
        assert rows["flags"].str.contains("too_small: n=10").all()
        assert not rows["flags"].str.contains("bound").any()
    assert bias.xs("normal", level="family")["beta"].isna().all()  # and a 2-parameter family is fitted
    assert bias["best"].groupby(level="step").sum().eq(1).all()
    summary = summarize_fits(df).set_index("layer")
    assert math.isnan(summary.loc["bias", "beta"]) and summary.loc["bias", "best"] in ("normal", "laplace")
    assert summary.loc["w", "beta"] == pytest.approx(1.0, rel=0.15)


@pytest.mark.cuda
def test_fit_capture_on_cuda_matches_cpu(run_dir):
    fams = ["normal", "laplace", "gennorm", "zi-gennorm"]
    cpu = fit_capture(run_dir, families=fams, progress=False, jobs=1)
    gpu = fit_capture(run_dir, families=fams, progress=False, jobs=1, device="cuda")
    assert (cpu["family"] == gpu["family"]).all() and (cpu["best"] == gpu["best"]).all()
    for col in ("beta", "pi", "loc", "scale", "loglik", "ks", "ad", "w1", "tail_log10_1e-02"):
        np.testing.assert_allclose(gpu[col], cpu[col], rtol=1e-5, atol=1e-9, equal_nan=True, err_msg=col)
