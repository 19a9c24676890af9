"""Quantizers by name: every registered class builds, satisfies the protocol and its cells roundtrip."""

import numpy as np
import pytest

from coders.quantizers import QUANTIZERS, Cells, Quantizer, UniformQuantizer, make_quantizer

OPTIONS = {"uniform": {"scale_mult": 0.5}, "lloyd-max": {"levels": 8, "family": "laplace"},
           "ecsq": {"scale_mult": 0.5, "lam": 0.2}}


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_every_registered_quantizer_builds_and_roundtrips_through_its_cells(name, x):
    q = make_quantizer(name, **OPTIONS[name])
    assert isinstance(q, QUANTIZERS[name]) and isinstance(q, Quantizer)
    qz = q.quantize(x)
    assert isinstance(qz.cells, Cells)
    xhat = q.dequantize(qz)
    np.testing.assert_array_equal(xhat, qz.cells.reconstruct(qz.symbols).reshape(x.shape))
    # every symbol's cell (model domain) contains the value it came from
    lo, hi = int(qz.symbols.min()), int(qz.symbols.max())
    e = qz.cells.edges(lo, hi)
    u = q.normalize(x)
    k = qz.symbols - lo
    assert np.all(e[k] <= u + 1e-12) and np.all(u <= e[k + 1] + 1e-12)


def test_unknown_quantizer_names_the_choices():
    with pytest.raises(ValueError, match="unknown quantizer 'cubic'.*uniform, lloyd-max, ecsq"):
        make_quantizer("cubic")
    assert make_quantizer("Uniform", step=0.5).name == UniformQuantizer(step=0.5).name
