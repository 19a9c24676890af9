"""The `gradstats` command line: every sub-command's error paths end in one line naming the bad value and
the valid ones (exit 2 for usage errors, 1 otherwise, no traceback); help lists choices and defaults;
damaged captures are reported; progress is plain lines in a log.

Most cases call `gradstats.cli.main` in this process, as the console script does, and read what
Python would do with its `SystemExit`: a string is printed as one line on stderr with exit status 1, an
integer is the exit status. Any other exception escapes and fails the test, so "no traceback" holds for
them too. A handful of cases run the real `python -m gradstats` in a subprocess (each one imports torch,
seconds of CPU): a parser error, an error after parsing, a damaged capture, `--debug`, progress in a
pipe, so the whole path from the console to the exit status is covered once each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from captures import write_capture
from gradstats.cli import main
from gradstats.cli_progress import LineProgress

ROOT = Path(__file__).resolve().parents[1]
STEPS = (0, 10, 20)
TRUNCATED = "000000010.rank0.safetensors"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m gradstats ARGS` with this checkout first on the path, stderr not a terminal."""
    full_env = {k: val for k, val in os.environ.items() if k != "GRADSTATS_DEBUG"}
    full_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run([sys.executable, "-m", "gradstats", *args], capture_output=True, text=True,
                          env=full_env, timeout=300)


@pytest.fixture
def cli(capsys, monkeypatch):
    """`cli(*args) -> (exit status, stdout, stderr)` of `main(args)`, as a console would see it."""
    monkeypatch.delenv("GRADSTATS_DEBUG", raising=False)

    def call(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # what the interpreter does with it at the top level
            code = exc.code
        out, err = capsys.readouterr()
        if isinstance(code, str):
            err, code = err + code + "\n", 1
        return (0 if code is None else int(code)), out, err

    return call


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A run directory holding capture/, a damaged copy (one truncated step file) and a plain file."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    grads = {s: {"fc.weight": rng.laplace(0, 1, 3000).astype(np.float32),
                 "fc.bias": rng.normal(0, 1, 40).astype(np.float32)} for s in STEPS}
    write_capture(root / "run" / "capture", grads)
    write_capture(root / "damaged", grads)
    step_file = root / "damaged" / "steps" / TRUNCATED
    with open(step_file, "r+b") as fh:
        fh.truncate(step_file.stat().st_size // 2)
    (root / "empty").mkdir()
    return {"root": root, "run": root / "run", "capture": root / "run" / "capture",
            "damaged": root / "damaged", "manifest": root / "run" / "capture" / "manifest.json",
            "empty": root / "empty", "step_file": step_file, "grads": grads}


def check_error(args: list[str], code: int, words: list[str], result: tuple[int, str, str]) -> None:
    """Exit code, one line on stderr starting `gradstats <cmd>: error:`, the words, no traceback."""
    status, out, err = result
    what = f"gradstats {' '.join(args)}"
    lines = err.strip().splitlines()
    assert status == code, f"{what}: exit {status}, stderr {err!r}"
    assert "Traceback" not in err, f"{what}: {err}"
    assert len(lines) == 1, f"{what}: {len(lines)} lines on stderr: {err!r}"
    assert lines[0].startswith(f"gradstats {args[0]}: error: "), f"{what}: {lines[0]!r}"
    for word in words:
        assert word in lines[0], f"{what}: {word!r} not in {lines[0]!r}"
    if args[0] != "inspect":  # inspect describes a damaged capture, then fails
        assert out == "", f"{what}: printed {out!r} before failing"


def check_errors(cli, cases: list[tuple[list[str], int, list[str]]]) -> None:
    for args, code, words in cases:
        check_error(args, code, words, cli(*args))


def test_train_errors(cli):
    check_errors(cli, [
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
        (["train", "--method", "powersgd", "--option", "seed=3"], 1, ["'seed'", "'powersgd'", "rank"]),
        (["train", "--option", "ratio"], 1, ["--option", "'ratio'", "key=value"]),
        (["train", "--device", "tpu"], 2, ["--device", "'tpu'", "cpu", "cuda"]),
    ])


def test_compare_errors_come_before_any_training(cli):
    check_errors(cli, [
        (["compare", "--methods", "bf16,nosuch"], 2, ["--methods", "'nosuch'", "bf16", "powersgd"]),
        (["compare", "--methods", "bf16,bf16"], 1, ["twice"]),
        (["compare", "--methods", "bf16", "--lrs", "mcm=0.1"], 1, ["--lrs", "mcm", "not compared", "bf16"]),
        (["compare", "--methods", "bf16", "--lrs", "bf16:0.1"], 1, ["--lrs", "'bf16:0.1'", "method=lr"]),
        (["compare", "--bandwidth-gbps", "0"], 2, ["--bandwidth-gbps", "'0'", "> 0"]),
        (["compare", "--baseline", "fp32"], 2, ["--baseline", "'fp32'", "bf16", "fp16"]),
    ])


def test_capture_errors(cli, runs):
    out = str(runs["root"] / "new")
    check_errors(cli, [
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


def test_capture_over_step_files_without_a_manifest_names_the_flag(cli, runs, tmp_path):
    """The store's own refusal (no manifest for the CLI to see, a step file of rank 0) names --overwrite."""
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "000000000.rank0.safetensors").write_bytes(b"x")
    check_errors(cli, [(["capture", "--workload", "mlp", "--steps", "1", "--out", str(tmp_path),
                         "--no-progress"], 1, ["already holds a capture", "--overwrite"])])


def test_inspect_fit_and_report_path_errors(cli, runs):
    missing = str(runs["root"] / "nonexistent")
    check_errors(cli, [
        (["inspect", missing], 1, [missing, "does not exist"]),
        (["inspect", str(runs["empty"])], 1, [str(runs["empty"]), "no manifest.json"]),
        (["inspect", str(runs["damaged"])], 1, [TRUNCATED, "--allow-damaged"]),
        (["fit", missing], 1, [missing, "does not exist"]),
        (["fit", str(runs["manifest"])], 1, ["manifest.json", "is a file", "capture directory"]),
        (["fit", str(runs["damaged"])], 1, [TRUNCATED, "truncated", "--allow-damaged"]),
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
        (["fit", str(runs["run"]), "--jobs", "0"], 2, ["--jobs", "'0'", ">= 1"]),
        (["fit", str(runs["run"]), "--device", "tpu"], 2, ["--device", "'tpu'", "cpu", "cuda"]),
        (["report", missing], 1, [missing]),
        (["report", str(runs["damaged"])], 1, [TRUNCATED, "--allow-damaged"]),
    ])


def test_code_errors(cli, runs):
    cap = str(runs["run"])
    check_errors(cli, [
        (["code", str(runs["root"] / "nonexistent")], 1, ["nonexistent", "does not exist"]),
        (["code", str(runs["manifest"])], 1, ["manifest.json", "is a file"]),
        (["code", str(runs["damaged"])], 1, [TRUNCATED, "--allow-damaged"]),
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


def test_demo_errors(cli, runs):
    check_errors(cli, [
        (["demo", "--device", "tpu", "--out", str(runs["root"] / "d")], 2, ["--device", "'tpu'", "cpu"]),
        (["demo", "--quick", "--out", str(runs["manifest"])], 1, ["--out", "manifest.json", "is a file"]),
        (["compare", "--out", str(runs["manifest"])], 1, ["--out", "manifest.json", "is a file"]),
    ])


def test_the_real_command_line_fails_in_one_line(runs):
    """The console path, once per kind of failure: the parser, a check after parsing, the store."""
    cases = [
        (["train", "--method", "nosuch"], 2, ["--method", "'nosuch'", "powersgd", "topk-ef"]),
        (["train", "--method", "powersgd", "--option", "nosuch=3"], 1, ["'nosuch'", "'powersgd'", "rank"]),
        (["fit", str(runs["damaged"])], 1, [TRUNCATED, "truncated", "--allow-damaged"]),
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda c: run(*c[0]), cases))
    for (args, code, words), res in zip(cases, results, strict=True):
        check_error(args, code, words, (res.returncode, res.stdout, res.stderr))


def test_debug_shows_the_traceback(cli, runs, monkeypatch):
    missing = str(runs["root"] / "nonexistent")
    res = run("fit", missing, "--debug")
    assert res.returncode == 1 and "Traceback" in res.stderr and missing in res.stderr
    monkeypatch.setenv("GRADSTATS_DEBUG", "1")  # the exception itself escapes main: Python prints it
    with pytest.raises(ValueError, match="does not exist") as info:
        main(["fit", missing])
    assert missing in str(info.value)


def test_help_lists_choices_and_defaults(cli):
    status, top, _ = cli("--help")
    assert status == 0
    for word in ("capture", "inspect", "fit", "code", "train", "compare", "report", "demo", "--out DIR"):
        assert word in top
    status, version, _ = cli("--version")
    assert status == 0 and version.startswith("gradstats ")
    expected = {
        "train": ["powersgd", "choco-topk", "(default: bf16)", "digits-cnn", "stdlib-lm", "gloo",
                  "(default: sim)", "(default: 200)", "ring", "label-skew"],
        "compare": ["powergossip", "signum-mv", "(default: bf16,powersgd,signum-mv",
                    "(default: runs/compare)", "fp16", "(default: 8)"],
        "fit": ["zi-<family>", "studentt", "(default: normal,laplace,gennorm,zi-gennorm)", "(default: fit)",
                "--jobs N worker processes", "--device DEVICE", "(default: cpu)"],
        "code": ["lloyd-max", "ecsq", "histogram", "zstd-<level", "(default: ans,huffman)",
                 "(default: uniform)", "(default: histogram,normal"],
        "capture": ["digits-cnn", "mlp", "(default: 300)", "(default: 25)", "bfloat16", "--overwrite"],
        "demo": ["--quick", "(default: runs/demo)", "--no-progress"],
        "inspect": ["--verify", "CRC-32", "--allow-damaged"],
    }
    for command, words in expected.items():
        status, out, _ = cli(command, "--help")
        text = " ".join(out.split())  # help wraps lines
        assert status == 0
        for word in words:
            assert word in text, f"{command} --help lacks {word!r}"
    _, fit_help, _ = cli("fit", "--help")
    assert "thread" not in fit_help


def test_fit_reports_a_damaged_capture_and_uses_its_readable_steps(cli, runs, tmp_path):
    status, out, err = cli("fit", str(runs["damaged"]), "--allow-damaged", "--families", "laplace",
                           "--out", str(tmp_path), "--no-progress")
    assert status == 0, err
    assert "warning" in err and TRUNCATED in err and "2 readable step(s)" in err
    fits = pd.read_parquet(tmp_path / "fits.parquet")
    assert sorted(fits["step"].unique()) == [0, 20]
    assert not fits["flags"].fillna("").str.contains("no_record").any()
    assert "fc.weight" in out and "records" in out


def test_fit_warns_about_an_unfinished_capture(cli, tmp_path):
    """A capture whose writer died mid-run (status 'recording' in its manifests, no live writer)."""
    cap = write_capture(tmp_path / "c", {s: {"w": np.linspace(-1, 1, 200, dtype=np.float32)} for s in STEPS})
    for name in ("manifest.json", "manifest.rank0.json"):
        m = json.loads((cap.path / name).read_text())
        (cap.path / name).write_text(json.dumps({**m, "status": "recording"}))
    status, _, err = cli("fit", str(cap.path), "--families", "laplace", "--no-progress")
    assert status == 0, err
    assert "warning" in err and "status interrupted" in err and "3 step(s)" in err


def test_inspect_accepts_a_run_directory_and_verify_reads_every_tensor(cli, runs, tmp_path):
    status, out, err = cli("inspect", str(runs["run"]))
    assert status == 0, err
    assert "fc.weight" in out and str(runs["capture"]) in out
    # a flipped bit in a tensor's bytes: the header reads, only the CRC-32 check sees it
    cap = write_capture(tmp_path / "c", runs["grads"])
    path = cap.path / "steps" / "000000020.rank0.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10
    path.write_bytes(bytes(data))
    assert cli("inspect", str(cap.path))[0] == 0
    status, out, err = cli("inspect", str(cap.path), "--verify")
    check_error(["inspect"], 1, ["000000020.rank0.safetensors", "--allow-damaged"], (status, out, err))
    assert "verified the CRC-32" in out


def test_fit_hands_jobs_device_and_a_bar_factory_to_fit_capture(cli, runs, tmp_path, monkeypatch):
    import gradstats.fitting

    seen: list[dict] = []
    real = gradstats.fitting.fit_capture

    def spy(*args, **kw):
        seen.append(kw)
        return real(*args, **kw)

    monkeypatch.setattr(gradstats.fitting, "fit_capture", spy)
    status, _, err = cli("fit", str(runs["run"]), "--families", "normal", "--jobs", "2", "--device", "cpu",
                         "--out", str(tmp_path / "a"))
    assert status == 0, err
    assert (seen[0]["jobs"], seen[0]["device"], seen[0]["progress"]) == (2, "cpu", LineProgress)
    assert "[progress] fit: 0/6 records" in err and "6/6 records (100%)" in err
    assert cli("fit", str(runs["run"]), "--families", "normal", "--out", str(tmp_path / "b"),
               "--no-progress")[0] == 0
    assert seen[1]["progress"] is False and seen[1]["jobs"] is None
    a, b = (pd.read_parquet(tmp_path / d / "fits.parquet") for d in "ab")  # 2 processes = 1 process
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))


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


@pytest.mark.parametrize("command, module, name", [
    (["demo", "--quick"], "analysis.demo", "run_demo"),
    (["train", "--steps", "2"], "coders.runtime.train", "train"),
    (["report"], "analysis.report", "write_report"),
])
def test_long_commands_hand_the_bar_factory_to_the_stage(cli, runs, tmp_path, monkeypatch, command, module,
                                                         name):
    import importlib

    seen: list = []

    def spy(*args, **kw):
        seen.append(kw["progress"])
        raise ValueError("stopped by the test")

    monkeypatch.setattr(importlib.import_module(module), name, spy)
    extra = [str(runs["run"])] if command == ["report"] else (["--out", str(tmp_path / "d")]
                                                              if command[0] == "demo" else [])
    for flags in ([], ["--no-progress"]):
        check_error(command, 1, ["stopped by the test"], cli(*command, *extra, *flags))
    assert seen == [LineProgress, False]  # stderr is not a terminal here: plain lines, then none


def test_train_and_report_show_plain_progress_lines(cli, runs, tmp_path):
    import shutil

    status, out, err = cli("train", "--workers", "2", "--steps", "3")
    assert status == 0, err
    assert "[progress] train bf16: 0/3 steps" in err and "3/3 steps (100%)" in err and "\r" not in err
    assert cli("train", "--workers", "2", "--steps", "1", "--no-progress")[2] == ""
    run_dir = tmp_path / "run"
    shutil.copytree(runs["run"], run_dir)
    status, out, err = cli("report", str(run_dir))
    assert status == 0, err
    assert "[progress] report figures: 0/1 units" in err and "1/1 units (100%)" in err


def test_new_flags_fail_up_front_in_one_line(cli, runs, tmp_path):
    check_errors(cli, [
        (["compare", "--model-params", "124M,lots"], 2, ["--model-params", "'lots'", "124M, 1.5B"]),
        (["compare", "--model-params", "0"], 2, ["--model-params", "positive count", "'0'"]),
        (["compare", "--seeds", "0,x"], 2, ["--seeds", "'0,x'", "comma list of integers"]),
        (["train", "--timeout", "0"], 2, ["--timeout", "'0'", "> 0"]),
        (["train", "--capture", str(tmp_path / "c"), "--capture-every", "0"], 2, ["--capture-every", "'0'",
                                                                                 ">= 1"]),
        (["train", "--capture", str(tmp_path / "c"), "--capture-sample", "-2"], 2, ["--capture-sample",
                                                                                   "'-2'", "fraction"]),
        (["train", "--capture-every", "5"], 1, ["--capture-every", "only with --capture"]),
        (["train", "--capture-sample", "0.1"], 1, ["--capture-sample", "only with --capture"]),
        (["train", "--capture", str(runs["manifest"])], 1, ["--capture", "manifest.json", "is a file"]),
        (["code", str(runs["run"]), "--loc", "abc"], 2, ["--loc", "'abc'", "'fit'"]),
        (["code", str(runs["run"]), "--fit", "mle"], 2, ["--fit", "'mle'", "codelength", "values"]),
    ])


def test_new_flags_reach_the_library(cli, runs, tmp_path, monkeypatch):
    import analysis.compare
    import coders.report
    import coders.runtime.train

    seen: dict = {}

    def spy(key):
        def call(*args, **kw):
            seen[key] = kw
            raise ValueError("stopped by the test")
        return call

    monkeypatch.setattr(analysis.compare, "compare", spy("compare"))
    monkeypatch.setattr(coders.runtime.train, "train", spy("train"))
    monkeypatch.setattr(coders.report, "code_capture", spy("code"))
    assert cli("compare", "--model-params", "124M,1.5B", "--seeds", "0,1,2", "--out", str(tmp_path))[0] == 1
    assert (seen["compare"]["model_params"], seen["compare"]["seeds"]) == ([124_000_000, 1_500_000_000],
                                                                           [0, 1, 2])
    assert cli("compare", "--out", str(tmp_path))[0] == 1
    assert (seen["compare"]["model_params"], seen["compare"]["seeds"]) == ((), None)
    cap = str(tmp_path / "cap")
    assert cli("train", "--capture", cap, "--capture-every", "5", "--capture-sample", "0.01",
               "--timeout", "30")[0] == 1
    t = seen["train"]
    assert (t["capture"], t["capture_every"], t["capture_sample"], t["timeout"]) == (cap, 5, 0.01, 30.0)
    assert cli("train", "--capture", cap, "--capture-sample", "1e5")[0] == 1
    assert (seen["train"]["capture_every"], seen["train"]["capture_sample"]) == (1, 100000)
    assert cli("code", str(runs["run"]), "--loc", "0", "--fit", "values", "--no-progress")[0] == 1
    assert (seen["code"]["loc"], seen["code"]["fit"]) == (0.0, "values")
    assert cli("code", str(runs["run"]), "--no-progress")[0] == 1
    assert (seen["code"]["loc"], seen["code"]["fit"]) == ("fit", "codelength")


def test_help_of_the_new_flags_shows_defaults(cli):
    from coders.runtime.train import DEFAULT_TIMEOUT

    _, train_help, _ = cli("train", "--help")
    for text in ("--capture DIR", "--capture-every N", "default: 1", "--capture-sample S",
                 "--timeout SECONDS", f"(default: {DEFAULT_TIMEOUT})"):
        assert text in " ".join(train_help.split()), text
    _, compare_help, _ = cli("compare", "--help")
    for text in ("--model-params SIZES", "124M,1.5B", "--seeds LIST", "default: --seed alone"):
        assert text in " ".join(compare_help.split()), text
    _, code_help, _ = cli("code", "--help")
    for text in ("--loc LOC", "(default: fit)", "--fit HOW", "codelength, values", "(default: codelength)"):
        assert text in " ".join(code_help.split()), text


def test_code_codes_the_finite_records_and_names_the_rest(cli, tmp_path):
    import pandas as pd

    from captures import write_capture

    a = np.random.default_rng(0).laplace(size=5000).astype(np.float32)
    b = a.copy()
    b[3] = np.nan
    write_capture(tmp_path / "cap", {0: {"w": a, "v": b}, 1: {"w": a, "v": a}})
    code, _, err = cli("code", str(tmp_path / "cap"), "--out", str(tmp_path / "out"), "--models",
                       "histogram,gennorm", "--coders", "ans", "--no-progress")
    assert code == 0
    assert "step 0, layer v not coded: skipped: 1 NaN of 5000 entries" in err
    bits = pd.read_parquet(tmp_path / "out" / "bits.parquet")
    coded = bits[bits["layer"] != "TOTAL"].groupby("step")["layer"].unique()
    assert list(coded[0]) == ["w"] and sorted(coded[1]) == ["v", "w"]


def test_code_verify_all_decodes_every_stream_and_gives_the_same_bits(cli, tmp_path):
    import pandas as pd

    from captures import write_capture

    rng = np.random.default_rng(1)
    # 2^17 entries: longer than the 2^16-symbol window of --verify sample
    write_capture(tmp_path / "cap", {0: {"w": rng.laplace(size=1 << 17).astype(np.float32)}})
    tables = {}
    for how in ("all", "sample", "none"):
        out = tmp_path / how
        code, _, _ = cli("code", str(tmp_path / "cap"), "--out", str(out), "--models", "histogram,gennorm",
                         "--verify", how, "--no-progress")
        assert code == 0
        tables[how] = pd.read_parquet(out / "bits.parquet")
    rows = {how: t[t["layer"] == "w"].set_index(["model", "coder"]) for how, t in tables.items()}
    for how in ("sample", "none"):
        pd.testing.assert_series_equal(rows[how]["bits_per_entry"], rows["all"]["bits_per_entry"])
    # all: every stream decoded (a rate everywhere); none: no decode at all
    assert rows["all"]["decode_MBps"].notna().all() and rows["none"]["decode_MBps"].isna().all()
    books = rows["sample"].drop(index=["best", "best-parametric"], level="model")
    assert books["decode_MBps"].notna().sum() == 2  # one model per coder (ans, huffman)
    assert cli("code", str(tmp_path / "cap"), "--verify", "some")[0] == 2
