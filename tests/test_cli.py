"""The real `gradstats` command line, run as a subprocess: every sub-command's error paths end in one
line naming the bad value and the valid ones (exit 2 for usage errors, 1 otherwise, no traceback);
help lists choices and defaults; damaged captures are reported; progress is plain lines in a log."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from captures import write_capture

ROOT = Path(__file__).resolve().parents[1]
STEPS = (0, 10, 20)


def run(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m gradstats ARGS` with this checkout first on the path, stderr not a terminal."""
    full_env = {k: val for k, val in os.environ.items() if k != "GRADSTATS_DEBUG"}
    full_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run([sys.executable, "-m", "gradstats", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A run directory holding capture/, a damaged copy (one truncated step file) and a plain file."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    grads = {s: {"fc.weight": rng.laplace(0, 1, 3000).astype(np.float32),
                 "fc.bias": rng.normal(0, 1, 40).astype(np.float32)} for s in STEPS}
    write_capture(root / "run" / "capture", grads)
    write_capture(root / "damaged", grads)
    step_file = root / "damaged" / "steps" / "000000010.rank0.safetensors"
    with open(step_file, "r+b") as fh:
        fh.truncate(step_file.stat().st_size // 2)
    (root / "empty").mkdir()
    return {"root": root, "run": root / "run", "capture": root / "run" / "capture",
            "damaged": root / "damaged", "manifest": root / "run" / "capture" / "manifest.json",
            "empty": root / "empty", "step_file": step_file}


def check_errors(cases: list[tuple[list[str], int, list[str]]]) -> None:
    """Run every case (two at a time) and check: exit code, one line on stderr, the words, no traceback."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda c: run(*c[0]), cases))
    for (args, code, words), res in zip(cases, results, strict=True):
        what = f"gradstats {' '.join(args)}"
        lines = res.stderr.strip().splitlines()
        assert res.returncode == code, f"{what}: exit {res.returncode}, stderr {res.stderr!r}"
        assert "Traceback" not in res.stderr, f"{what}: {res.stderr}"
        assert len(lines) == 1, f"{what}: {len(lines)} lines on stderr: {res.stderr!r}"
        assert lines[0].startswith(f"gradstats {args[0]}: error: "), f"{what}: {lines[0]!r}"
        for word in words:
            assert word in lines[0], f"{what}: {word!r} not in {lines[0]!r}"
        if args[0] != "inspect":  # inspect describes a damaged capture, then fails
            assert res.stdout == "", f"{what}: printed {res.stdout!r} before failing"


def test_train_errors():
    check_errors([
        (["train", "--method", "nosuch"], 2, ["--method", "'nosuch'", "powersgd", "topk-ef"]),
        (["train", "--workload", "nosuch"], 2, ["--workload", "'nosuch'", "digits-cnn", "stdlib-lm"]),
        (["train", "--backend", "foo"], 2, ["--backend", "'foo'", "gloo", "nccl", "sim"]),
        (["train", "--steps", "0"], 2, ["--steps", "'0'", ">= 1"]),
        (["train", "--workers", "0"], 2, ["--workers", "'0'", ">= 1"]),
        (["train", "--lr", "0"], 2, ["--lr", "'0'", "> 0"]),
        (["train", "--split", "skewed"], 2, ["--split", "'skewed'", "label-skew"]),
        (["train", "--method", "dpsgd", "--topology", "nosuch"], 2, ["--topology", "'nosuch'", "ring",
                                                                      "torus"]),
        (["train", "--method", "topk-ef", "--topology", "ring"], 1, ["--topology ring", "'topk-ef'",
                                                                      "powergossip"]),
        (["train", "--method", "powersgd", "--option", "nosuch=3"], 1, ["'nosuch'", "'powersgd'", "rank",
                                                                        "warm_start"]),
        (["train", "--option", "ratio"], 1, ["--option", "'ratio'", "key=value"]),
        (["train", "--device", "tpu"], 2, ["--device", "'tpu'", "cpu", "cuda"]),
    ])


def test_compare_errors_come_before_any_training():
    check_errors([
        (["compare", "--methods", "bf16,nosuch"], 2, ["--methods", "'nosuch'", "bf16", "powersgd"]),
        (["compare", "--methods", "bf16,bf16"], 1, ["twice"]),
        (["compare", "--methods", "bf16", "--lrs", "mcm=0.1"], 1, ["--lrs", "mcm", "not compared", "bf16"]),
        (["compare", "--methods", "bf16", "--lrs", "bf16:0.1"], 1, ["--lrs", "'bf16:0.1'", "method=lr"]),
        (["compare", "--bandwidth-gbps", "0"], 2, ["--bandwidth-gbps", "'0'", "> 0"]),
        (["compare", "--baseline", "fp32"], 2, ["--baseline", "'fp32'", "bf16", "fp16"]),
    ])


def test_capture_errors(runs):
    out = str(runs["root"] / "new")
    check_errors([
        (["capture", "--workload", "nosuch", "--out", out], 2, ["--workload", "'nosuch'", "digits-cnn"]),
        (["capture", "--steps", "0", "--out", out], 2, ["--steps", "'0'", ">= 1"]),
        (["capture", "--every", "0", "--out", out], 2, ["--every", "'0'", ">= 1"]),
        (["capture", "--sample", "2.5", "--out", out], 2, ["--sample", "'2.5'", "fraction"]),
        (["capture", "--what", "grad,hessian", "--out", out], 2, ["--what", "'hessian'", "update"]),
        (["capture", "--dtype", "int8", "--out", out], 2, ["--dtype", "'int8'", "bfloat16", "float16"]),
        (["capture", "--out", str(runs["capture"])], 1, [str(runs["capture"]), "already holds a capture",
                                                          "--overwrite"]),
        (["capture", "--out", str(runs["manifest"])], 1, ["manifest.json", "is a file"]),
        (["capture", "--workload", "mlp", "--out", "/proc/no/such/dir"], 1, ["No such file", "/proc/no"]),
    ])


def test_inspect_fit_and_report_path_errors(runs):
    missing = str(runs["root"] / "nonexistent")
    check_errors([
        (["inspect", missing], 1, [missing, "does not exist"]),
        (["inspect", str(runs["empty"])], 1, [str(runs["empty"]), "no manifest.json"]),
        (["inspect", str(runs["damaged"])], 1, ["000000010.rank0.safetensors", "--allow-damaged"]),
        (["fit", missing], 1, [missing, "does not exist"]),
        (["fit", str(runs["manifest"])], 1, ["manifest.json", "is a file", "capture directory"]),
        (["fit", str(runs["damaged"])], 1, ["000000010.rank0.safetensors", "truncated", "--allow-damaged"]),
        (["fit", str(runs["run"]), "--families", "normal,cauchy"], 2, ["--families", "'cauchy'", "gennorm",
                                                                       "zi-<family>"]),
        (["fit", str(runs["run"]), "--loc", "abc"], 2, ["--loc", "'abc'", "'fit'"]),
        (["fit", str(runs["run"]), "--record-stride", "0"], 2, ["--record-stride", "'0'"]),
        (["fit", str(runs["run"]), "--every", "2"], 2, ["--every", "--record-stride"]),
        (["fit", str(runs["run"]), "--record-steps", "5"], 1, ["--record-steps 5", "0, 10, 20"]),
        (["fit", str(runs["run"]), "--record-steps", "0", "--record-stride", "2"], 1, ["--record-steps",
                                                                                    "--record-stride"]),
        (["fit", str(runs["run"]), "--record-steps", "a,b"], 2, ["--record-steps", "'a,b'"]),
        (["fit", str(runs["run"]), "--layers", "nosuch*"], 1, ["nosuch*", "fc.weight"]),
        (["fit", str(runs["run"]), "--out", str(runs["root"] / "fits.txt")], 1, ["--out", "fits.txt",
                                                                                "parquet or .csv"]),
        (["report", missing], 1, [missing]),
        (["report", str(runs["damaged"])], 1, ["000000010.rank0.safetensors", "--allow-damaged"]),
    ])


def test_code_errors(runs):
    cap = str(runs["run"])
    check_errors([
        (["code", str(runs["root"] / "nonexistent")], 1, ["nonexistent", "does not exist"]),
        (["code", str(runs["manifest"])], 1, ["manifest.json", "is a file"]),
        (["code", str(runs["damaged"])], 1, ["000000010.rank0.safetensors", "--allow-damaged"]),
        (["code", cap, "--step-size", "0"], 2, ["--step-size", "'0'", "> 0"]),
        (["code", cap, "--quantizer", "lloyd-max", "--levels", "1"], 1, ["lloyd-max", "levels", ">= 2", "1"]),
        (["code", cap, "--quantizer", "ecsq", "--levels", "8"], 1, ["--levels", "ecsq", "--step-size",
                                                                     "--lam"]),
        (["code", cap, "--quantizer", "nosuch"], 2, ["--quantizer", "'nosuch'", "lloyd-max", "uniform"]),
        (["code", cap, "--models", "normal,cauchy"], 2, ["--models", "'cauchy'", "histogram", "gennorm"]),
        (["code", cap, "--coders", "ans,foo"], 2, ["--coders", "'foo'", "huffman", "zstd"]),
        (["code", cap, "--family", "cauchy", "--quantizer", "lloyd-max"], 2, ["--family", "'cauchy'",
                                                                               "laplace"]),
        (["code", cap, "--clip-quantile", "1.5", "--levels", "8"], 2, ["--clip-quantile", "'1.5'", "(0, 1]"]),
        (["code", cap, "--steps", "0"], 2, ["--steps", "--record-steps"]),
    ])


def test_demo_errors(runs):
    check_errors([
        (["demo", "--device", "tpu", "--out", str(runs["root"] / "d")], 2, ["--device", "'tpu'", "cpu"]),
        (["demo", "--quick", "--out", str(runs["manifest"])], 1, ["--out", "manifest.json", "is a file"]),
        (["compare", "--out", str(runs["manifest"])], 1, ["--out", "manifest.json", "is a file"]),
    ])


def test_debug_shows_the_traceback(runs):
    missing = str(runs["root"] / "nonexistent")
    for res in (run("fit", missing, "--debug"), run("fit", missing, env={"GRADSTATS_DEBUG": "1"})):
        assert res.returncode == 1 and "Traceback" in res.stderr and missing in res.stderr


def test_help_lists_choices_and_defaults():
    top = run("--help")
    assert top.returncode == 0
    for word in ("capture", "inspect", "fit", "code", "train", "compare", "report", "demo", "--out DIR"):
        assert word in top.stdout
    assert run("--version").stdout.startswith("gradstats ")
    expected = {
        "train": ["powersgd", "choco-topk", "(default: bf16)", "digits-cnn", "stdlib-lm", "gloo",
                  "(default: sim)", "(default: 200)", "ring", "label-skew"],
        "compare": ["powergossip", "signum-mv", "(default: bf16,powersgd,signum-mv",
                    "(default: runs/compare)", "fp16", "(default: 8)"],
        "fit": ["zi-<family>", "studentt", "(default: normal,laplace,gennorm,zi-gennorm)", "(default: fit)"],
        "code": ["lloyd-max", "ecsq", "histogram", "zstd-<level", "(default: ans,huffman)",
                 "(default: uniform)", "(default: histogram,normal"],
        "capture": ["digits-cnn", "mlp", "(default: 300)", "(default: 25)", "bfloat16", "--overwrite"],
        "demo": ["--quick", "(default: runs/demo)", "--no-progress"],
    }
    for command, words in expected.items():
        res = run(command, "--help")
        text = " ".join(res.stdout.split())  # help wraps lines
        assert res.returncode == 0
        for word in words:
            assert word in text, f"{command} --help lacks {word!r}"


def test_fit_reports_a_damaged_capture_and_uses_its_readable_steps(runs, tmp_path):
    res = run("fit", str(runs["damaged"]), "--allow-damaged", "--families", "laplace",
              "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "warning" in res.stderr and "000000010.rank0.safetensors" in res.stderr
    fits = pd.read_parquet(tmp_path / "fits.parquet")
    assert sorted(fits["step"].unique()) == [0, 20]
    assert not fits["flags"].fillna("").str.contains("no_record").any()
    assert "fc.weight" in res.stdout and "records" in res.stdout


def test_inspect_accepts_a_run_directory(runs):
    res = run("inspect", str(runs["run"]))
    assert res.returncode == 0, res.stderr
    assert "fc.weight" in res.stdout and str(runs["capture"]) in res.stdout


def test_progress_is_plain_lines_in_a_log_and_silenced_by_no_progress(runs, tmp_path):
    res = run("fit", str(runs["run"]), "--families", "normal", "--out", str(tmp_path / "a"))
    assert res.returncode == 0, res.stderr
    assert "[progress] fit: 0/6 records" in res.stderr and "6/6 records (100%)" in res.stderr
    assert "\r" not in res.stderr and "\x1b" not in res.stderr
    quiet = run("fit", str(runs["run"]), "--families", "normal", "--out", str(tmp_path / "b"),
                "--no-progress")
    assert quiet.returncode == 0 and quiet.stderr == ""
    # the written table and the printed summary say the same: 3 records per layer, no NaN shown raw
    fits = pd.read_parquet(tmp_path / "b" / "fits.parquet")
    assert len(fits) == 2 * len(STEPS) and "NaN" not in quiet.stdout
