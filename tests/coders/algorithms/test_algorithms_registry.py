"""The method registry: every method declares every fact on its class, and the facts agree with behaviour."""

from __future__ import annotations

import pytest
import torch

from coders.algorithms.base import FACTS, Algorithm, missing_facts
from coders.algorithms.registry import GOSSIP_METHODS, METHODS, make_algorithm, method_class, register
from coders.communication.comm import run_threads
from coders.communication.topology import make_topology


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_registered_method_declares_every_fact(name):
    cls = method_class(name)
    assert missing_facts(cls) == []
    for fact in FACTS:
        assert fact in {k for c in cls.__mro__ if c is not Algorithm for k in vars(c)}, fact
    # a preset is a name for options of its class; the class's own name is registered too
    assert cls.name in METHODS
    assert (name in GOSSIP_METHODS) == cls.needs_topology
    assert (cls.optimizer_at == "local") == (cls.pattern == "p2p")


def test_sign_methods_share_their_facts_by_construction():
    """signSGD-MV is Signum-MV with beta = 0: same communication, so the same overlap."""
    assert method_class("signsgd-mv").can_overlap is method_class("signum-mv").can_overlap is True
    assert not method_class("mcm").can_overlap and not method_class("rand-mcm").can_overlap
    assert method_class("mcm").optimizer_at == "server"


def test_a_class_without_its_facts_cannot_register():
    class Half(Algorithm):
        name = "half"
        pattern = "ps"

    with pytest.raises(ValueError, match="can_overlap"):
        register(Half)
    assert "half" not in METHODS


def test_a_wrong_fact_value_or_a_taken_name_is_refused():
    class Bus(Algorithm):
        name = "bus-method"
        pattern = "bus"
        allreduce_compatible = False
        can_overlap = True
        optimizer_at = "replicas"
        needs_topology = False

    with pytest.raises(ValueError, match="pattern='bus'"):
        register(Bus)
    Bus.pattern = "ps"
    Bus.name = "bf16"
    with pytest.raises(ValueError, match="registered twice"):
        register(Bus)


def _step_once(comm, name):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(6, 5))
    p.grad = torch.randn(6, 5, generator=torch.Generator().manual_seed(comm.rank))
    topo = make_topology("ring", comm.world_size) if method_class(name).needs_topology else None
    algo = make_algorithm(name, [p], comm, topology=topo)
    algo.step(0.01)
    return algo.pattern, algo.allreduce_compatible


@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_built_object_carries_its_class_facts(name):
    cls = method_class(name)
    for pattern, compatible in run_threads(3, _step_once, name):
        assert (pattern, compatible) == (cls.pattern, cls.allreduce_compatible)
