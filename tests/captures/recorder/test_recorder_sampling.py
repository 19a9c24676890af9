"""Sampling rules: how many entries a layer keeps, and the command-line --sample parser."""


import pytest

from captures.recorder import parse_sample, sample_size


def test_sample_size_rules():
    assert sample_size(100, None) is None
    assert sample_size(100, 10) == 10 and sample_size(100, 100) is None and sample_size(100, 1000) is None
    assert sample_size(100, 0.1) == 10 and sample_size(100, 1.0) is None and sample_size(3, 0.01) == 1
    for bad in (0, -1, 0.0, 1.5, "10", True):
        with pytest.raises(ValueError):
            sample_size(100, bad)


def test_parse_sample():
    assert parse_sample(None) is None and parse_sample("full") is None
    assert parse_sample("100000") == 100000 and isinstance(parse_sample("1e5"), int)
    assert parse_sample("0.01") == 0.01 and parse_sample("1.0") == 1.0 and parse_sample("1") == 1
    for bad in ("0", "-3", "1.5", "abc", "0.0"):
        with pytest.raises(ValueError, match="--sample"):
            parse_sample(bad)
