"""The workload registry: every workload is deterministic per seed; bad arguments are clear errors."""

import pytest
import torch

from captures import WORKLOADS, make_workload


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
