"""The alpha-beta (latency-bandwidth) network model: time of one step's communication and of one step.

    T(message of S bits) = alpha + S / B                      (Hockney 1994)

with the collective costs of Thakur, Rabenseifner and Gropp (2005) for ring algorithms:

    ring all-reduce   2 (W-1) alpha + 2 (W-1)/W * S / B
    ring all-gather     (W-1) alpha +   (W-1)   * S / B
    parameter server  2 alpha + W (S_up + S_down) / B      (the server's link carries all W flows)
    point-to-point    alpha + deg * S_nbr / B                (one NIC shared by the deg neighbours)

The iteration time charges compute, compression and communication,
`t = t_fwd + t_bwd + t_codec + t_comm`, or `t_fwd + max(t_bwd, t_comm) + t_codec` for methods whose
communication can overlap with the backward pass (bucketed DDP-style hooks; gossip of x_t, which
does not depend on the gradient at x_t). Pure functions of numbers: no training, no tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PATTERNS = ("allreduce", "allgather", "ps", "p2p")

# Share of one training step's compute spent in the backward pass (backward ~ 2x forward FLOPs).
BACKWARD_FRACTION = 2.0 / 3.0


@dataclass(frozen=True)
class Network:
    """Alpha-beta network: per-message latency alpha (s) and per-link bandwidth B (bit/s).

    Hockney's model T(S) = alpha + S / B; links are full duplex, every worker has one NIC.
    """

    bandwidth_gbps: float = 10.0
    latency_us: float = 5.0

    def __post_init__(self) -> None:
        if not (self.bandwidth_gbps > 0 and math.isfinite(self.bandwidth_gbps)):
            raise ValueError(f"bandwidth_gbps must be a positive finite number, got {self.bandwidth_gbps}")
        if not (self.latency_us >= 0 and math.isfinite(self.latency_us)):
            raise ValueError(f"latency_us must be a non-negative finite number, got {self.latency_us}")

    @property
    def alpha(self) -> float:
        """Latency per message in seconds."""
        return self.latency_us * 1e-6

    @property
    def bits_per_s(self) -> float:
        """Bandwidth in bit/s."""
        return self.bandwidth_gbps * 1e9

    def describe(self) -> str:
        """One line stating the model and its parameters."""
        return (f"alpha-beta network: {self.bandwidth_gbps:g} Gbit/s per link, {self.latency_us:g} us "
                "latency per message; ring all-reduce 2(W-1)/W*S, all-gather (W-1)*S, "
                "parameter server W*(S_up+S_down) at the server, p2p deg*S per worker")


def check_workers(workers: int) -> None:
    """Raise ValueError unless `workers` is a positive integer."""
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers}")


def _check_bits(name: str, bits: float) -> None:
    if not (bits >= 0 and math.isfinite(bits)):
        raise ValueError(f"{name} must be a non-negative finite number of bits, got {bits}")


def ring_allreduce_time(bits: float, workers: int, net: Network) -> float:
    """Ring all-reduce of an S-bit message on W workers: 2(W-1) alpha + 2(W-1)/W * S/B.

    Reduce-scatter then all-gather, each W-1 rounds of S/W bits (Thakur et al. 2005).
    """
    _check_bits("bits", bits)
    check_workers(workers)
    if workers == 1:
        return 0.0
    return 2 * (workers - 1) * net.alpha + 2 * (workers - 1) / workers * bits / net.bits_per_s


def ring_allgather_time(bits: float, workers: int, net: Network) -> float:
    """Ring all-gather of S bits from each of W workers: (W-1) alpha + (W-1) * S/B."""
    _check_bits("bits", bits)
    check_workers(workers)
    if workers == 1:
        return 0.0
    return (workers - 1) * net.alpha + (workers - 1) * bits / net.bits_per_s


def parameter_server_time(bits_up: float, bits_down: float, workers: int, net: Network) -> float:
    """Parameter server round: 2 alpha + W (S_up + S_down) / B.

    The server's one link receives W uplink messages and sends W downlink copies (a unicast per
    worker); workers' own links are not the bottleneck.
    """
    _check_bits("bits_up", bits_up)
    _check_bits("bits_down", bits_down)
    check_workers(workers)
    return 2 * net.alpha + workers * (bits_up + bits_down) / net.bits_per_s


def p2p_time(bits_per_neighbour: float, degree: int, net: Network) -> float:
    """Point-to-point exchange with `degree` neighbours: alpha + deg * S_nbr / B.

    The deg sends are posted together (one latency) and share the worker's link; receives use
    the other direction of the full-duplex link.
    """
    _check_bits("bits_per_neighbour", bits_per_neighbour)
    if int(degree) != degree or degree < 0:
        raise ValueError(f"degree must be a non-negative integer, got {degree}")
    if degree == 0:
        return 0.0
    return net.alpha + degree * bits_per_neighbour / net.bits_per_s


def comm_time(pattern: str, bits_up: float, bits_down: float, workers: int, net: Network,
              degree: int | None = None) -> float:
    """Communication time of one step for a method with the given pattern.

    `bits_up` is the payload one worker sends per step (for p2p: in total, over its `degree`
    neighbours), `bits_down` the payload it receives from a server (pattern "ps" only).
    """
    if pattern == "allreduce":
        return ring_allreduce_time(bits_up, workers, net)
    if pattern == "allgather":
        return ring_allgather_time(bits_up, workers, net)
    if pattern == "ps":
        return parameter_server_time(bits_up, bits_down, workers, net)
    if pattern == "p2p":
        if degree is None:
            raise ValueError("pattern 'p2p' needs the topology degree")
        return p2p_time(bits_up / degree if degree else 0.0, degree, net)
    raise ValueError(f"unknown communication pattern {pattern!r}; expected one of {PATTERNS}")


def iteration_time(compute_s: float, codec_s: float, comm_s: float, overlap: bool,
                   backward_fraction: float = BACKWARD_FRACTION) -> float:
    """Estimated time of one step: t_fwd + t_bwd + t_codec + t_comm, or t_fwd + max(t_bwd, t_comm) + t_codec.

    With overlap, communication runs while the backward pass computes the remaining buckets;
    compression still costs compute time on the worker.
    """
    for name, v in (("compute_s", compute_s), ("codec_s", codec_s), ("comm_s", comm_s)):
        if not (v >= 0 and math.isfinite(v)):
            raise ValueError(f"{name} must be a non-negative finite time, got {v}")
    if not 0.0 <= backward_fraction <= 1.0:
        raise ValueError(f"backward_fraction must be in [0, 1], got {backward_fraction}")
    if not overlap:
        return compute_s + codec_s + comm_s
    t_bwd = backward_fraction * compute_s
    return (compute_s - t_bwd) + max(t_bwd, comm_s) + codec_s
