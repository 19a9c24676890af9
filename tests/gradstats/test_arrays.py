"""The sample primitives of gradstats.arrays against numpy."""

import numpy as np

from gradstats.arrays import count_equal, median, prepare


def test_median_is_numpys_median_bit_for_bit():
    rng = np.random.default_rng(5)
    for dtype in (np.float16, np.float32, np.float64):
        for n in (1, 2, 3, 4, 1000, 1001, 65536):
            x = (rng.standard_normal(n) * 3).astype(dtype)
            assert median(x) == float(np.median(x))
            assert median(np.round(x)) == float(np.median(np.round(x)))  # ties


def test_prepare_finds_every_nonfinite_entry_and_passes_overflowing_finite_sums():
    big = np.full(10, 3e38, dtype=np.float32)  # a float32 sum overflows; every entry is finite
    v, omitted = prepare(big)
    assert omitted == 0 and v is not None
    x = np.ones(1000, dtype=np.float32)
    x[[3, 7]] = np.nan
    x[9] = -np.inf
    v, omitted = prepare(x, "omit")
    assert omitted == 3 and len(v) == 997
    h = np.full(100, 60000.0, dtype=np.float16)  # float16 max is 65504
    assert prepare(h)[1] == 0


def test_count_equal_compares_in_the_data_precision():
    x = np.array([0.1, 0.1, 0.2, 0.0], dtype=np.float32)
    assert count_equal(x, 0.1) == 2  # 0.1 as float32, as numpy compares a float32 array
    assert count_equal(x, 0.0) == 1
    assert count_equal(x.astype(np.float64), 0.1) == 0  # float32(0.1) != 0.1 in float64
