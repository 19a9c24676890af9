"""Built-in workloads: determinism, shards, training actually learns."""

import numpy as np
import pytest
import torch

from captures import WORKLOADS, make_workload
from captures.workloads import VOCAB_SIZE, encode_chars, iid_shards, label_skew_shards


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_same_seed_same_init_and_different_seed_differs(name):
    a = make_workload(name, seed=1)
    r1, r2 = a.make_model(), a.make_model()
    for p, q, m in zip(r1.parameters(), r2.parameters(), a.model.parameters(), strict=True):
        assert torch.equal(p, q) and torch.equal(p, m)
    torch.manual_seed(123)  # the global RNG state must not matter
    b = make_workload(name, seed=1).make_model()
    assert all(torch.equal(p, q) for p, q in zip(r1.parameters(), b.parameters(), strict=True))
    c = make_workload(name, seed=2).make_model()
    assert not all(torch.equal(p, q) for p, q in zip(r1.parameters(), c.parameters(), strict=True))


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


def test_lm_batches_are_shifted_windows_of_the_text():
    w = make_workload("stdlib-lm", text_chars=50_000)
    text = w.train_ids
    x, y = next(w.batches(0, 2, batch_size=4, split="label-skew"))
    assert x.shape == y.shape == (4, w.config.seq_len)
    assert torch.equal(x[:, 1:], y[:, :-1])
    half = len(text) // 2
    for row in torch.cat([x, y[:, -1:]], dim=1):
        found = [s for s in range(half - w.config.seq_len) if torch.equal(text[s:s + len(row)], row)]
        assert found, "window not found in rank 0's half of the text"


def test_encode_chars():
    ids = encode_chars("a\tb\n\u00e9")
    assert ids.dtype == np.uint8 and ids.shape == (5,)
    assert ids[-1] == ids.max()  # the non-ASCII char is the unknown id
    assert len(set(ids[:4].tolist())) == 4


@pytest.mark.parametrize("name,steps", [("digits-cnn", 200), ("mlp", 300)])
def test_digits_reaches_90_percent(name, steps):
    w = make_workload(name, seed=0)
    before = w.evaluate(w.model)["accuracy"]
    for _ in range(steps):
        w.step()
    after = w.evaluate(w.model)
    assert w.metric_name == "accuracy" and w.higher_is_better
    assert before < 0.3 and after["accuracy"] > 0.9


def test_lm_loss_falls_below_unigram_level():
    w = make_workload("stdlib-lm", seed=0, text_chars=100_000, d_model=32, d_ff=128, seq_len=32)
    start = w.evaluate(w.model)["loss"]
    assert start == pytest.approx(np.log(VOCAB_SIZE), abs=0.1)  # ~uniform over the vocabulary at init
    ids = w.train_ids.numpy()
    freq = np.bincount(ids, minlength=VOCAB_SIZE) / len(ids)
    unigram = -np.sum(freq[freq > 0] * np.log(freq[freq > 0]))  # loss of the best context-free model
    for _ in range(120):
        w.step()
    end = w.evaluate(w.model)
    assert w.metric_name == "loss" and not w.higher_is_better
    assert end["loss"] < unigram - 0.3, (end, unigram)
    assert end["bits_per_char"] == pytest.approx(end["loss"] / np.log(2))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown workload"):
        make_workload("resnet")
    w = make_workload("mlp")
    with pytest.raises(ValueError, match="split"):
        w.batches(split="dirichlet")
    with pytest.raises(ValueError, match="rank"):
        w.batches(rank=4, world_size=4)
    with pytest.raises(ValueError, match="unknown stdlib-lm option"):
        make_workload("stdlib-lm", width=3)
    with pytest.raises(ValueError, match="takes no options"):
        make_workload("mlp", width=3)
