"""Data splits: IID shards and the label-skew split partition the data."""

import numpy as np

from captures.workloads import iid_shards, label_skew_shards


def test_iid_shards_partition():
    shards = iid_shards(103, 4, seed=0)
    allidx = np.concatenate(shards)
    assert sorted(allidx.tolist()) == list(range(103))
    assert {len(s) for s in shards} <= {25, 26}


def test_label_skew_partition_and_few_classes():
    labels = np.repeat(np.arange(10), 100)
    shards = label_skew_shards(labels, 10, seed=0)
    assert sorted(np.concatenate(shards).tolist()) == list(range(1000))
    # 20 shards of exactly half a class each: every worker sees at most 2 classes.
    for s in shards:
        assert len(np.unique(labels[s])) <= 2
