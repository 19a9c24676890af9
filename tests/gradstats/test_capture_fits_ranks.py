"""Fits of a capture with several ranks: per-rank statistics and their spread (issue 12)."""

import numpy as np
import pytest

import gradstats
from captures import write_capture


@pytest.fixture
def two_ranks(tmp_path):
    """Rank 0's gradients are Laplace (beta 1), rank 1's Normal (beta 2): the spread must show it."""
    rng = np.random.default_rng(0)
    path = tmp_path / "cap"
    for rank, draw in ((0, rng.laplace), (1, rng.standard_normal)):
        write_capture(path, {s: {"w": (draw(size=20_000) * 1e-3).astype(np.float32)} for s in (0, 1)},
                      rank=rank, world_size=2)
    return gradstats.open_capture(path)


def test_rank_spread_reports_each_rank_and_their_spread(two_ranks):
    assert two_ranks.ranks == [0, 1]
    fits = gradstats.fit_capture(two_ranks, families=["gennorm"], ranks=None, goodness=False,
                                 progress=False, jobs=1, loc=0.0)
    assert sorted(set(fits["rank"])) == [0, 1]
    spread = gradstats.rank_spread(fits).set_index(["layer", "family"]).loc[("w", "gennorm")]
    assert spread["ranks"] == 2
    per_rank = fits.groupby("rank")["beta"].median()
    assert spread["beta_min"] == per_rank.min() and spread["beta_max"] == per_rank.max()
    assert spread["beta_min"] == pytest.approx(1.0, abs=0.1)
    assert spread["beta_max"] == pytest.approx(2.0, abs=0.15)
    assert spread["beta_rel_std"] == pytest.approx(per_rank.std(ddof=0) / per_rank.mean())
    summary = gradstats.summarize_fits(fits).set_index("layer").loc["w"]
    assert summary["ranks"] == 2 and summary["beta_rank_max"] > 1.7 > 1.2 > summary["beta_rank_min"]
