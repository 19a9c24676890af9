"""Methods by name: the centralized ones here, merged with `coders.algorithms.gossip.GOSSIP_METHODS`.

`make_algorithm(name, params, comm, topology=None, **options)` builds one worker's algorithm;
`METHODS` lists every name. Gossip classes (`needs_topology = True`) get the topology.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

from torch import Tensor

from coders.algorithms.compressed_sgd import QSGDSGD, RandomKSGD, TopKSGD
from coders.algorithms.dense import BF16AllReduce, FP16AllReduce, FP32AllReduce
from coders.algorithms.mcm import MCM, RandMCM
from coders.algorithms.powersgd import PowerSGD
from coders.algorithms.s3gd import S3GDMV
from coders.algorithms.signsgd import EFSignSGD, SignSGDMV, SignumMV
from coders.runtime.comm import Comm

__all__ = ["CENTRAL_METHODS", "methods", "method_class", "make_algorithm"]

CENTRAL_METHODS: dict[str, Any] = {
    "fp32": FP32AllReduce,
    "sgd": FP32AllReduce,
    "fp16": FP16AllReduce,
    "bf16": BF16AllReduce,
    "signsgd-mv": SignSGDMV,
    "signum-mv": SignumMV,
    "ef-signsgd": EFSignSGD,
    "s3gd-mv": S3GDMV,
    "powersgd": PowerSGD,
    "mcm": MCM,
    "rand-mcm": RandMCM,
    "topk": TopKSGD,
    "topk-ef": partial(TopKSGD, error_feedback=True),
    "randk": RandomKSGD,
    "randk-ef": partial(RandomKSGD, error_feedback=True),
    "qsgd": QSGDSGD,
    "qsgd-ef": partial(QSGDSGD, error_feedback=True),
}


def _gossip_methods() -> dict[str, Any]:
    try:
        from coders.algorithms.gossip import GOSSIP_METHODS
    except ImportError:
        return {}
    return dict(GOSSIP_METHODS)


def methods() -> dict[str, Any]:
    """Every method by name: centralized and (when present) gossip."""
    out = dict(CENTRAL_METHODS)
    for name, cls in _gossip_methods().items():
        out.setdefault(name, cls)
    return out


def method_class(name: str) -> type:
    """The class behind a method name (unwrapping the preset options of e.g. `topk-ef`)."""
    all_methods = methods()
    if name not in all_methods:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(all_methods)}")
    m = all_methods[name]
    return m.func if isinstance(m, partial) else m


def make_algorithm(name: str, params: Iterable[Tensor], comm: Comm, topology: Any = None, **options):
    """One worker's algorithm object for method `name`."""
    factory = methods().get(name)
    if factory is None:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(methods())}")
    if getattr(method_class(name), "needs_topology", False):
        if topology is None:
            raise ValueError(f"method {name!r} is decentralized and needs a topology (ring, torus, ...)")
        return factory(params, comm, topology=topology, **options)
    if topology is not None:
        raise ValueError(f"method {name!r} is centralized; it takes no topology")
    return factory(params, comm, **options)
