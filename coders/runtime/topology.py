"""Moved to `coders.communication.topology` (communication sits below the algorithms); re-exported here."""

from coders.communication.topology import (  # noqa: F401
    TOPOLOGIES,
    Topology,
    from_adjacency,
    from_weights,
    fully_connected,
    make_topology,
    metropolis_hastings,
    ring,
    star,
    torus,
    watts_strogatz,
)

__all__ = ["Topology", "TOPOLOGIES", "make_topology", "metropolis_hastings", "ring", "torus",
           "fully_connected", "star", "watts_strogatz", "from_adjacency", "from_weights"]
