"""Moved to `coders.communication.comm` (communication sits below the algorithms); re-exported here."""

from coders.communication.comm import (
    Comm,
    DistComm,
    ThreadComm,
    ThreadGroup,
    free_port,
    run_processes,
    run_threads,
)

__all__ = ["Comm", "ThreadComm", "ThreadGroup", "DistComm", "run_threads", "run_processes", "free_port"]
