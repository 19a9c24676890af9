"""The digits workloads: batches from the rank's own shard; training reaches 90% accuracy."""

import numpy as np
import pytest

from captures import make_workload


def test_digits_batches_come_from_own_shard_and_cycle():
    w = make_workload("mlp")
    x_all = w._x_train
    for split in ("iid", "label-skew"):
        shard = set(w.shard_indices(2, 4, split, seed=5).tolist())
        other = set(w.shard_indices(1, 4, split, seed=5).tolist())
        assert not shard & other
        allowed = x_all[sorted(shard)].reshape(len(shard), -1)
        it = w.batches(2, 4, batch_size=50, split=split, seed=5)
        for _ in range(20):  # more than one epoch of the ~360-image shard
            x, y = next(it)
            assert x.shape == (50, 1, 8, 8) and y.shape == (50,)
            # every image of the batch is a row of this rank's shard
            match = (x.reshape(50, 1, -1) == allowed[None]).all(-1).any(-1)
            assert bool(match.all())
        labels_seen = np.unique(w.train_labels[sorted(shard)])
        if split == "label-skew":
            assert len(labels_seen) <= 6
        else:
            assert len(labels_seen) == 10


@pytest.mark.parametrize("name,steps", [("digits-cnn", 200), ("mlp", 300)])
def test_digits_reaches_90_percent(name, steps):
    w = make_workload(name, seed=0)
    before = w.evaluate(w.model)["accuracy"]
    for _ in range(steps):
        w.step()
    after = w.evaluate(w.model)
    assert w.metric_name == "accuracy" and w.higher_is_better
    assert before < 0.3 and after["accuracy"] > 0.9
