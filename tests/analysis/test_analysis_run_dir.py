"""Run-directory discovery (analysis.run_dir): which directories are units, where their capture is."""

import numpy as np
import pandas as pd
import pytest

from analysis.run_dir import capture_dir, find_units, read_table, slug


def _capture(path):
    from captures import write_capture

    return write_capture(path, {0: {"w": np.arange(6, dtype=np.float32)}})


def test_units_are_the_root_and_or_its_workload_children(tmp_path):
    root = tmp_path / "run"
    _capture(root / "digits-cnn" / "capture")
    (root / "stdlib-lm").mkdir(parents=True)
    pd.DataFrame({"a": [1]}).to_parquet(root / "stdlib-lm" / "fits.parquet")
    (root / "figures").mkdir()
    (root / "empty").mkdir()
    assert find_units(root) == [root / "digits-cnn", root / "stdlib-lm"]  # figures/, empty/ are not units
    assert capture_dir(root / "digits-cnn") == root / "digits-cnn" / "capture"
    assert capture_dir(root / "stdlib-lm") is None
    # a capture directory that `gradstats fit` wrote its table into is itself a unit
    _capture(tmp_path / "x")
    assert find_units(tmp_path / "x") == [tmp_path / "x"] and capture_dir(tmp_path / "x") == tmp_path / "x"
    with pytest.raises(ValueError, match="does not exist"):
        find_units(tmp_path / "nope")


def test_read_table_and_slug(tmp_path):
    assert read_table(tmp_path / "absent.parquet") is None
    pd.DataFrame({"a": [1, 2]}).to_csv(tmp_path / "t.csv", index=False)
    assert read_table(tmp_path / "t.csv")["a"].tolist() == [1, 2]
    assert slug("layer.0/conv weight") == "layer_0_conv_weight"
