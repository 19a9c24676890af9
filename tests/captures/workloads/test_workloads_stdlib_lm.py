"""The stdlib-lm workload: character encoding, shifted windows, the loss falls."""

import numpy as np
import pytest
import torch

from captures import make_workload
from captures.workloads import VOCAB_SIZE, encode_chars


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
