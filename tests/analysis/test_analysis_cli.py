"""`gradstats compare` and `gradstats report` from the command line, on small real runs."""

import pandas as pd
import pytest

from gradstats.cli import main


def test_cli_compare_small_run(tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main(["compare", "--workload", "mlp", "--methods", "bf16,randk", "--workers", "2", "--steps", "4",
               "--eval-every", "2", "--bandwidth-gbps", "1", "--latency-us", "50", "--lr", "randk=0.02",
               "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "1 Gbit/s" in text and "50 us" in text
    s = pd.read_parquet(out / "compare.parquet").set_index("method")
    assert list(s.index) == ["bf16", "randk"]
    assert (s["bandwidth_gbps"] == 1.0).all() and (s["latency_us"] == 50.0).all()
    # ring all-reduce on 2 workers: 2 alpha + S / B, S = the measured bf16 payload per worker
    bf16 = s.loc["bf16"]
    assert bf16["comm_s"] == pytest.approx(2 * 50e-6 + bf16["bits_up"] / 1e9)
    # the mlp has 17226 parameters: bf16 sends 16 bits each
    assert bf16["bits_up"] == 16 * 17226
    assert s.loc["randk", "up_ratio_vs_bf16"] > 1
    assert s.loc["randk", "lr"] == 0.02 and s.loc["bf16", "lr"] != 0.02
    csv = pd.read_csv(out / "compare.csv")
    assert list(csv["method"]) == ["bf16", "randk"]
    assert (out / "figures" / "metric_vs_time.png").exists()


def test_cli_compare_bad_arguments(tmp_path):
    with pytest.raises(SystemExit, match="bandwidth"):
        main(["compare", "--methods", "bf16", "--bandwidth-gbps", "-1", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="lr"):
        main(["compare", "--methods", "bf16", "--lr", "bf16:0.1", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="not compared"):
        main(["compare", "--methods", "bf16", "--lr", "mcm=0.1", "--steps", "1", "--out", str(tmp_path)])


def test_cli_report_errors_on_empty_dir(tmp_path):
    with pytest.raises(SystemExit, match="holds no"):
        main(["report", str(tmp_path)])
