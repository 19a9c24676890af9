"""Full distributed methods, written once against the Comm interface (`coders.communication`).

One worker's view: `Algo(params, comm, **options).step(lr) -> StepStats`. Each method is one
module whose class declares its facts (`coders.algorithms.base.FACTS`) and registers itself
(`coders.algorithms.registry.register`); this package imports every method module so that the
registry is complete. Build by name with `make_algorithm(name, params, comm, topology=None,
**options)`; `methods()` lists the names, `method_class(name)` gives the class.
"""

from coders.algorithms import (  # noqa: F401 - imported to register their methods
    coded_sgd,
    compressed_sgd,
    dense,
    gossip,
    mcm,
    powersgd,
    s3gd,
    signsgd,
)
from coders.algorithms.base import FACTS, Algorithm, StepStats
from coders.algorithms.registry import CENTRAL_METHODS, make_algorithm, method_class, methods

__all__ = ["Algorithm", "StepStats", "FACTS", "CENTRAL_METHODS", "make_algorithm", "method_class", "methods"]
