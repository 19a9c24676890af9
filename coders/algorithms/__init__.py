"""Full distributed methods, written once against the Comm interface.

One worker's view: `Algo(params, comm, **options).step(lr) -> StepStats`. Build by name with
`make_algorithm(name, params, comm, topology=None, **options)`; `methods()` lists the names
(centralized ones here, gossip ones from `coders.algorithms.gossip`).
"""

from coders.algorithms.base import Algorithm, StepStats
from coders.algorithms.registry import CENTRAL_METHODS, make_algorithm, method_class, methods

__all__ = ["Algorithm", "StepStats", "CENTRAL_METHODS", "make_algorithm", "method_class", "methods"]
