"""Codec time in isolation (analysis.codec_cost): one worker against a loopback Comm, bits exact."""

import pytest
import torch

from analysis.codec_cost import LoopbackComm, codec_table, codec_time_layer


def test_loopback_comm_stands_in_for_w_identical_workers():
    c = LoopbackComm(4)
    t = torch.arange(3.0)
    assert torch.equal(c.all_reduce(t), 4 * t)
    gathered = c.all_gather(t)
    assert len(gathered) == 4 and all(torch.equal(g, t) for g in gathered)
    gathered[0][0] = 9.0  # copies, not views of the sender's tensor
    assert t[0] == 0.0
    assert set(c.exchange({1: t, 3: 2 * t})) == {1, 3}
    with pytest.raises(ValueError, match="world_size"):
        LoopbackComm(0)


def test_codec_table_counts_exact_bits_and_restores_threads():
    before = torch.get_num_threads()
    t = codec_table(["bf16", "randk"], "mlp", workers=2, shapes=((32, 32),), steps=2, warmup=1,
                    options={"randk": {"ratio": 0.25}})
    assert torch.get_num_threads() == before
    assert list(t["layer"]) == ["workload", "32x32", "workload", "32x32"]
    r = t.set_index(["method", "layer"])
    # bf16 all-reduce: 16 bits per entry, up and down; the mlp has 17226 parameters
    assert r.loc[("bf16", "workload"), "entries"] == 17226
    assert r.loc[("bf16", "workload"), "bits_up"] == 16 * 17226
    assert r.loc[("bf16", "32x32"), "bits_up_per_entry"] == 16.0
    # random-k at 25% sends a quarter of the values (shared seed: no indices) at 32 bits
    assert r.loc[("randk", "32x32"), "bits_up"] == pytest.approx(0.25 * 1024 * 32, rel=0.01)
    assert (t["threads"] == 1).all() and (t["codec_ms"] >= 0).all()
    assert r.loc[("bf16", "32x32"), "codec_ns_per_entry"] == pytest.approx(
        1e6 * r.loc[("bf16", "32x32"), "codec_ms"] / 1024)
    with pytest.raises(ValueError, match="steps"):
        codec_table(["bf16"], None, steps=0)


def test_gossip_method_runs_against_the_loopback_neighbours():
    r = codec_time_layer("powergossip", (16, 16), workers=4, steps=2, warmup=1)
    assert r["entries"] == 256 and r["bits_up"] > 0 and r["codec_s"] >= 0
