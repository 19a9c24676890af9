"""`gradstats capture` / `gradstats inspect`."""

import numpy as np
import pytest

from captures import open_capture
from gradstats.cli import main


def test_capture_then_inspect(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["capture", "--workload", "mlp", "--steps", "30", "--every", "10", "--sample", "100",
               "--what", "grad,update", "--dtype", "float16", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "fc1.weight" in text and "final evaluation: accuracy" in text
    cap = open_capture(out)
    assert cap.steps == [0, 10, 20] and cap.kinds == ["grad", "update"]
    assert cap.manifest["model"] == "mlp" and len(cap.manifest["extra"]["losses"]) == 30
    assert cap.get("fc1.weight", 10).dtype == np.float16 and cap.get("fc1.weight", 10).shape == (100,)
    assert cap.get("fc3.bias", 20).shape == (10,)

    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "steps     3 (0 .. 20, every 10)" in text and "fc2.weight" in text and "64x128" in text

    with pytest.raises(SystemExit, match="already holds a capture"):
        main(["capture", "--workload", "mlp", "--steps", "2", "--out", str(out)])
    with pytest.raises(SystemExit, match="--sample"):
        main(["capture", "--workload", "mlp", "--steps", "2", "--sample", "2.5",
              "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="no capture directory"):
        main(["inspect", str(tmp_path / "missing")])


def test_capture_summary_only_cli(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["capture", "--workload", "digits-cnn", "--steps", "4", "--every", "2", "--summary-only",
                 "--layers", "conv*", "--out", str(out)]) == 0
    m = open_capture(out).moments()
    assert sorted(m["layer"].unique()) == ["conv1.bias", "conv1.weight", "conv2.bias", "conv2.weight"]
    assert m["step"].unique().tolist() == [0, 2]
    assert (m["hist_counts"].map(sum) == m["n"]).all()
