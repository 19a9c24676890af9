"""Full distributed methods, written once against the Comm interface (`coders.communication`).

One worker's view: `Algo(params, comm, **options).step(lr) -> StepStats`. Each method is one
module whose class declares its facts (`coders.algorithms.base.FACTS`) and registers itself
(`coders.algorithms.registry.register`); this package imports every module in it (and in
`gossip/`) so that the registry is complete: adding a method is adding its file. Build by name
with `make_algorithm(name, params, comm, topology=None, **options)`; `methods()` lists the names,
`method_class(name)` gives the class.
"""

import importlib
import pkgutil

from coders.algorithms.base import FACTS, Algorithm, StepStats
from coders.algorithms.registry import CENTRAL_METHODS, make_algorithm, method_class, methods


def _import_method_modules(package: str, path: list[str]) -> None:
    """Import every module of `package` so its methods register: a new method is one new file."""
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if info.name not in ("base", "registry"):
            importlib.import_module(f"{package}.{info.name}")


_import_method_modules(__name__, __path__)

__all__ = ["Algorithm", "StepStats", "FACTS", "CENTRAL_METHODS", "make_algorithm", "method_class", "methods"]
