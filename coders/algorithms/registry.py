"""The one registry of methods: classes register themselves, with their presets, by decorator.

    @register                                         # registered under cls.name
    @register(presets={"topk-ef": {"error_feedback": True}})   # plus named option presets

A class is checked when it registers: it must declare every fact of `FACTS`
(`coders.algorithms.base`), so a fact can never live in a string elsewhere and drift from its
method. `make_algorithm(name, params, comm, topology=None, **options)` builds one worker's
algorithm (an option the method does not take is a one-line ValueError listing the ones it does);
`methods()` maps every name to its factory (the class, or a `functools.partial` holding a
preset's options); `method_class(name)` gives the class; `method_option_names(name)` the options
its constructor takes. The method modules are
imported by `coders.algorithms` (the package), so importing anything from it fills the registry.

Adding a method is one file: a module in `coders/algorithms/` (or `gossip/`) whose class
subclasses `Algorithm` (or `GossipAlgorithm`), declares the six facts, implements
`step(lr) -> StepStats` against `Comm`, and carries `@register`. The package imports every module
it holds, so nothing else is edited.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from torch import Tensor

from coders.algorithms.base import missing_facts
from coders.communication.comm import Comm

__all__ = ["METHODS", "CENTRAL_METHODS", "GOSSIP_METHODS", "RUNTIME_OPTIONS", "register", "methods",
           "method_class", "method_option_names", "check_method_options", "make_algorithm"]

METHODS: dict[str, Any] = {}
"""Every method by name -> factory (class or partial of a preset)."""
CENTRAL_METHODS: dict[str, Any] = {}
"""The centralized subset of METHODS (needs_topology False)."""
GOSSIP_METHODS: dict[str, Any] = {}
"""The decentralized subset of METHODS (needs_topology True)."""
RUNTIME_OPTIONS = frozenset({"seed", "topology"})
"""Constructor keywords the runtime passes itself (`coders.runtime.train`); not a user's options."""


def _add(name: str, factory: Any, cls: type) -> None:
    if name in METHODS:
        raise ValueError(f"method {name!r} is registered twice "
                         f"({method_class(name).__name__}, {cls.__name__})")
    METHODS[name] = factory
    (GOSSIP_METHODS if cls.needs_topology else CENTRAL_METHODS)[name] = factory


def register(cls: type | None = None, *, presets: dict[str, dict[str, Any]] | None = None) -> Any:
    """Class decorator: register `cls` under `cls.name` and each preset name (options bound).

    Raises ValueError when the class does not declare every fact, or a name is taken.
    """

    def wrap(c: type) -> type:
        bad = missing_facts(c)
        if bad:
            raise ValueError(f"method class {c.__name__} does not declare its facts: {', '.join(bad)}")
        _add(c.name, c, c)
        for name, opts in (presets or {}).items():
            _add(name, partial(c, **opts) if opts else c, c)
        return c

    return wrap if cls is None else wrap(cls)


def methods() -> dict[str, Any]:
    """Every method by name (a copy of METHODS)."""
    return dict(METHODS)


def method_class(name: str) -> type:
    """The class behind a method name (unwrapping the preset options of e.g. `topk-ef`)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    m = METHODS[name]
    return m.func if isinstance(m, partial) else m


def method_option_names(name: str) -> set[str]:
    """The keyword options method `name`'s constructor takes, following `**options` up its classes.

    A preset's bound options (e.g. `error_feedback` of `topk-ef`) count, and so do the names a class
    takes out of `**options` itself and declares in `operator_options` (Choco's `ratio`, ...); the
    runtime's own keywords (`RUNTIME_OPTIONS`: seed, topology) and `params`, `comm` do not.
    """
    factory = METHODS.get(name)
    if factory is None:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    names: set[str] = set(factory.keywords) if isinstance(factory, partial) else set()
    names |= set(getattr(method_class(name), "operator_options", ()))  # taken out of **options in the body
    for cls in method_class(name).__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break  # this constructor passes nothing further up
    return names - {"self", "params", "comm"} - RUNTIME_OPTIONS


def check_method_options(name: str, options: Iterable[str]) -> None:
    """ValueError (one line) when an option key is not one method `name` takes, listing the ones it does.

    The runtime's own keywords (`RUNTIME_OPTIONS`) are accepted. Call it before starting workers, so a
    typo fails at once and not as a TypeError inside every worker.
    """
    known = method_option_names(name)
    unknown = sorted(set(options) - known - RUNTIME_OPTIONS)
    if unknown:
        raise ValueError(f"method {name!r} has no option {unknown[0]!r}; its options: "
                         f"{', '.join(sorted(known)) or 'none'}")


def make_algorithm(name: str, params: Iterable[Tensor], comm: Comm, topology: Any = None, **options):
    """One worker's algorithm object for method `name` (ValueError for an unknown name or option)."""
    factory: Callable[..., Any] | None = METHODS.get(name)
    if factory is None:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    check_method_options(name, options)
    if method_class(name).needs_topology:
        if topology is None:
            raise ValueError(f"method {name!r} is decentralized and needs a topology (ring, torus, ...)")
        return factory(params, comm, topology=topology, **options)
    if topology is not None:
        raise ValueError(f"method {name!r} is centralized; it takes no topology")
    return factory(params, comm, **options)
