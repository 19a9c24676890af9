"""Batched decoding (several workers' messages at once), QSGD's unpacked round trip, fast random-k draws."""

from __future__ import annotations

import collections
import math

import pytest
import torch
from scipy.stats import chisquare

from coders.compressors import QSGD, RandomK, pack_bits
from coders.compressors.payload import unpack_rows
from coders.compressors.sparse import sample_without_replacement


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5, 6, 7, 9, 16, 32])
@pytest.mark.parametrize("n", [0, 1, 7, 13, 1001])
def test_unpack_rows_inverts_pack_bits_of_each_row(width, n):
    g = torch.Generator().manual_seed(width * 1000 + n)
    x = torch.randint(0, 2 ** min(width, 31), (3, n), generator=g)
    packed = torch.stack([pack_bits(r, width) for r in x])
    assert torch.equal(unpack_rows(packed, width, n), x)
    with pytest.raises(ValueError, match="cannot hold"):
        unpack_rows(packed[:, :-1], width, n) if packed.shape[1] else unpack_rows(packed, width, n + 9)


@pytest.mark.parametrize("levels,bucket,contractive", [(4, None, False), (16, 512, False), (3, 7, True)])
@pytest.mark.parametrize("d", [1, 10, 4097])
def test_qsgd_decompress_many_and_roundtrip_equal_the_packed_path(levels, bucket, contractive, d):
    c = QSGD(levels, bucket, seed=1, contractive=contractive)
    xs = [torch.randn(d, generator=torch.Generator().manual_seed(r)) for r in range(4)]
    payloads = [c.compress(x, {}) for x in xs]
    rows = c.decompress_many(payloads)
    assert rows.shape == (4, d)
    for r, p in enumerate(payloads):
        assert torch.equal(rows[r], c.decompress(p))
    # roundtrip: the same random draws, values and wire bits as compress -> decompress
    packed_state, direct_state = {}, {}
    for _ in range(2):
        p = c.compress(xs[0], packed_state)
        out, bits = c.roundtrip(xs[0], direct_state)
        assert torch.equal(out, c.decompress(p)) and bits == p.bits
    with pytest.raises(ValueError, match="different sizes"):
        c.decompress_many([payloads[0], QSGD(levels, bucket).compress(torch.randn(d + 1))])


def test_sample_without_replacement_is_uniform_over_subsets():
    g = torch.Generator().manual_seed(0)
    counts = collections.Counter()
    for _ in range(6600):  # d = 12, k = 2 takes the draw-with-replacement path (4 k < d)
        s = sample_without_replacement(12, 2, g)
        assert s.unique().numel() == 2 and 0 <= int(s.min()) and int(s.max()) < 12
        counts[tuple(sorted(s.tolist()))] += 1
    assert len(counts) == math.comb(12, 2)
    assert chisquare(list(counts.values())).pvalue > 1e-4  # 100 draws per subset expected
    big = sample_without_replacement(10**6, 1000, g)
    assert big.unique().numel() == 1000 and int(big.max()) < 10**6
    assert sample_without_replacement(5, 5, g).sort().values.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="0 <= k <= d"):
        sample_without_replacement(3, 4, g)


def test_randk_small_ratio_shared_positions_and_unbiased():
    d, k = 400, 10  # 4 k < d: the fast path
    c = RandomK(k=k, seed=5)
    x = torch.randn(d, generator=torch.Generator().manual_seed(1))
    sa, sb = {"key": 2}, {"key": 2}
    pa, pb = c.compress(x, sa), c.compress(x, sb)
    assert torch.equal(pa.meta["indices"], pb.meta["indices"]) and pa.bits == 32 * k
    # a receiver without the cached positions derives the same ones from the seed
    meta = {key: v for key, v in pa.meta.items() if key != "indices"}
    assert torch.equal(c.decompress(type(pa)(pa.tensors, meta)), c.decompress(pa))
    n, state, acc = 4000, {}, torch.zeros(d)
    for _ in range(n):
        acc += c(x, state)
    se = x.abs() * math.sqrt(d / k - 1) / math.sqrt(n)
    assert torch.all((acc / n - x).abs() < 5 * se + 1e-6)
