"""`gradstats fit` / `gradstats code` with `--jobs`, `--engine dask` and `--scheduler`: the tables equal the
serial ones; a bad engine, a stray --scheduler and a missing dask each end in one line."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from captures import write_capture
from gradstats.cli import main

TIMING = ["encode_MBps", "decode_MBps", "encode_Meps", "decode_Meps", "quantize_s", "model_s"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    rng = np.random.default_rng(4)
    grads = {s: {"conv.weight": rng.laplace(0, 1e-3, (16, 8, 3, 3)).astype(np.float32),
                 "fc.weight": rng.standard_normal((30, 40)).astype(np.float32),
                 "fc.bias": rng.normal(0, 1e-2, 30).astype(np.float32)} for s in (0, 5)}
    root = tmp_path_factory.mktemp("run")
    write_capture(root / "capture", grads)
    return root


@pytest.fixture(scope="module")
def scheduler():
    pytest.importorskip("distributed")
    from captures.engine import dask_client

    with dask_client(None, jobs=2) as client:  # 2 worker processes; this process's environment kept
        yield client.scheduler.address


def _cli(*args: str) -> tuple[int, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        return (1, exc.code) if isinstance(exc.code, str) else (int(exc.code or 0), "")
    return code, ""


def test_fit_tables_of_a_pool_and_of_dask_equal_the_serial_one(run_dir, scheduler, tmp_path):
    runs = {"serial": ["--jobs", "1"], "pool": ["--jobs", "2"],
            "dask": ["--engine", "dask", "--scheduler", scheduler]}
    for name, flags in runs.items():
        assert _cli("fit", str(run_dir), *flags, "--no-progress", "--out", str(tmp_path / name)) == (0, "")
    serial, pool, dask = (pd.read_parquet(tmp_path / n / "fits.parquet").drop(columns="seconds")
                          for n in runs)
    assert len(serial) == 2 * 3 * 4  # records x the four default families
    pd.testing.assert_frame_equal(serial, pool, check_exact=True)
    pd.testing.assert_frame_equal(serial, dask, check_exact=True)


def test_code_tables_of_a_pool_and_of_dask_equal_the_serial_one(run_dir, scheduler, tmp_path):
    runs = {"serial": ["--jobs", "1"], "pool": ["--jobs", "2"],
            "dask": ["--engine", "dask", "--scheduler", scheduler]}
    for name, flags in runs.items():
        assert _cli("code", str(run_dir), "--models", "histogram,laplace,gennorm", *flags, "--no-progress",
                    "--out", str(tmp_path / name)) == (0, "")
    serial, pool, dask = (pd.read_parquet(tmp_path / n / "bits.parquet").drop(columns=TIMING) for n in runs)
    assert set(serial["layer"]) == {"conv.weight", "fc.weight", "fc.bias", "TOTAL"}
    pd.testing.assert_frame_equal(serial, pool, check_exact=True)
    pd.testing.assert_frame_equal(serial, dask, check_exact=True)


@pytest.mark.parametrize("command", ["fit", "code"])
def test_engine_errors_are_one_line(run_dir, command, capsys, monkeypatch):
    with pytest.raises(SystemExit) as info:
        main([command, str(run_dir), "--engine", "ray"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1
    for word in ("--engine", "'ray'", "dask", "process"):
        assert word in err
    status, message = _cli(command, str(run_dir), "--scheduler", "tcp://127.0.0.1:8786", "--no-progress")
    assert status == 1 and "--scheduler applies to --engine dask only" in message
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if dask were not installed
    status, message = _cli(command, str(run_dir), "--engine", "dask", "--no-progress")
    assert status == 1 and "\n" not in message and "pip install 'gradstats[dask]'" in message


def test_help_names_the_engines(capsys):
    for command in ("fit", "code"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for word in ("--jobs N", "--engine NAME", "dask", "--scheduler ADDRESS", "tcp://host:8786"):
            assert word in text, f"{command} --help lacks {word!r}"
