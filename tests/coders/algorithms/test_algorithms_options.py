"""Method options: `method_option_names` lists what each constructor takes, and `make_algorithm`
refuses any other key with one ValueError naming it and the valid ones (not a TypeError in a worker)."""

from __future__ import annotations

import inspect
from functools import partial

import pytest
import torch

from coders.algorithms.registry import (
    METHODS,
    RUNTIME_OPTIONS,
    check_method_options,
    make_algorithm,
    method_class,
    method_option_names,
)
from coders.communication.comm import ThreadGroup
from coders.communication.topology import make_topology


def _defaults(name: str) -> dict[str, object]:
    """Each option's default as the constructors declare it (the most derived class first)."""
    out: dict[str, object] = {}
    for cls in reversed(method_class(name).__mro__):
        init = cls.__dict__.get("__init__")
        if init is not None:
            out.update({p.name: p.default for p in inspect.signature(init).parameters.values()
                        if p.default is not inspect.Parameter.empty})
    factory = METHODS[name]
    if isinstance(factory, partial):
        out.update(factory.keywords)
    return out


def _build(name: str, **options: object) -> object:
    comm = ThreadGroup(1).comms()[0]
    topology = make_topology("full", 1) if method_class(name).needs_topology else None
    return make_algorithm(name, [torch.zeros(4, 3, requires_grad=True)], comm, topology=topology, **options)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_listed_option_is_taken_by_the_constructor(name):
    names = method_option_names(name)
    assert names and not names & ({"self", "params", "comm"} | RUNTIME_OPTIONS)
    defaults = _defaults(name)
    ops = set(getattr(method_class(name), "operator_options", ()))  # a gossip variant's operator's own
    assert names - ops <= set(defaults), sorted(names - ops - set(defaults))
    given = {k: defaults[k] for k in names - ops}
    given |= {k: v for k, v in (("ratio", 0.5), ("rank", 1)) if k in ops}
    _build(name, **given, seed=3)  # all at once, plus the runtime's seed


@pytest.mark.parametrize("name", ["powersgd", "topk-ef", "dpsgd", "coded-sgd"])
def test_an_unknown_option_is_one_value_error_listing_the_valid_ones(name):
    with pytest.raises(ValueError) as info:
        _build(name, nosuch=3)
    text = str(info.value)
    assert "\n" not in text and "'nosuch'" in text and repr(name) in text
    assert all(k in text for k in method_option_names(name))
    with pytest.raises(ValueError, match="'nosuch'"):
        check_method_options(name, ["momentum", "nosuch"])
    check_method_options(name, ["momentum", "seed"])  # the runtime's seed is always accepted


def test_known_options_of_some_methods():
    assert {"rank", "warm_start", "error_feedback", "momentum"} <= method_option_names("powersgd")
    assert {"ratio", "k", "error_feedback"} <= method_option_names("topk-ef")  # preset keys count
    assert "gamma" in method_option_names("dpsgd") and "rank" not in method_option_names("dpsgd")
    assert {"ratio", "k"} <= method_option_names("choco-topk")
    assert "rank" in method_option_names("choco-lowrank")
    assert not {"ratio", "k", "rank"} & method_option_names("choco-sign")  # the sign operator takes none
    assert _build("choco-topk", k=2).compressor.k == 2
    with pytest.raises(ValueError, match="'choco-sign' has no option 'ratio'"):
        _build("choco-sign", ratio=0.1)
    with pytest.raises(ValueError, match="unknown method 'nosuch'"):
        method_option_names("nosuch")
