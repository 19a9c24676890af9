"""Communication graphs for decentralized training: Metropolis-Hastings gossip weights and their spectrum.

A `Topology` is an undirected connected graph on W workers together with a symmetric, doubly
stochastic gossip matrix `W` (row i holds the weights worker i gives to itself and to its
neighbours). Every built-in graph uses Metropolis-Hastings weights

    w_ij = 1 / (1 + max(d_i, d_j))  for an edge (i, j),   w_ii = 1 - sum_{j != i} w_ij,

which for the ring is (I + S + S^T) / 3 and for the 4x4 torus 1/5 per neighbour, as in
Vogels et al. 2020 (PowerGossip, `topologies.py` of epfml/powergossip).

Spectral quantities (Koloskova et al. 2019; Vogels et al. 2020, Sec. 4): with eigenvalues
1 = lambda_1 >= lambda_2 >= ... >= lambda_W of W and mu_k = 1 - lambda_k those of I - W,
- `spectral_gap` = 1 - lambda_2 (= mu_2, the convergence rate of the slowest consensus mode),
- `rho` = max(|lambda_2|, |lambda_W|) (the contraction factor of plain gossip x <- W x),
- `optimal_gossip_step` = 2 / (mu_2 + mu_max): the over-relaxed step gamma minimising
  max_{k >= 2} |1 - gamma mu_k| for x <- x - gamma (I - W) x (1.308 for the 8-ring).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Topology",
    "TOPOLOGIES",
    "make_topology",
    "metropolis_hastings",
    "ring",
    "torus",
    "fully_connected",
    "star",
    "watts_strogatz",
    "from_adjacency",
    "from_weights",
]


@dataclass(frozen=True, eq=False)
class Topology:
    """An undirected connected graph of workers with a symmetric doubly stochastic gossip matrix."""

    name: str
    W: np.ndarray  # (n, n) float64 gossip matrix, W[i, j] = weight of j's value in i's average
    adjacency: np.ndarray = field(repr=False)  # (n, n) bool, no self-loops

    def __post_init__(self) -> None:
        _validate(self.W, self.adjacency, self.name)
        self.W.setflags(write=False)
        self.adjacency.setflags(write=False)

    @property
    def workers(self) -> int:
        """Number of workers (nodes)."""
        return int(self.W.shape[0])

    def neighbours(self, rank: int) -> list[int]:
        """Ranks connected to `rank`, ascending, without `rank` itself."""
        if not 0 <= rank < self.workers:
            raise ValueError(f"rank {rank} is outside 0..{self.workers - 1} of topology {self.name}")
        return [int(j) for j in np.flatnonzero(self.adjacency[rank])]

    def weight(self, i: int, j: int) -> float:
        """Gossip weight w_ij that worker i gives to worker j's value."""
        return float(self.W[i, j])

    def degree(self, rank: int) -> int:
        """Number of neighbours of `rank`."""
        return len(self.neighbours(rank))

    @property
    def edges(self) -> list[tuple[int, int]]:
        """Undirected edges (i, j) with i < j."""
        i, j = np.nonzero(np.triu(self.adjacency, 1))
        return [(int(a), int(b)) for a, b in zip(i, j, strict=True)]

    @property
    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues of W, descending (W is symmetric, so they are real)."""
        return np.sort(np.linalg.eigvalsh(self.W))[::-1]

    @property
    def laplacian_eigenvalues(self) -> np.ndarray:
        """Eigenvalues mu_k = 1 - lambda_k of I - W, ascending (mu_1 = 0)."""
        return 1.0 - self.eigenvalues

    @property
    def spectral_gap(self) -> float:
        """1 - lambda_2(W); 1 for a single worker."""
        lam = self.eigenvalues
        return 1.0 if lam.size < 2 else float(1.0 - lam[1])

    @property
    def rho(self) -> float:
        """max(|lambda_2|, |lambda_W|): per-step contraction of the disagreement under x <- W x."""
        lam = self.eigenvalues
        return 0.0 if lam.size < 2 else float(np.max(np.abs(lam[1:])))

    @property
    def optimal_gossip_step(self) -> float:
        """Over-relaxed gossip step 2 / (mu_2 + mu_max) of I - W; 1 for a single worker."""
        mu = self.laplacian_eigenvalues
        return 1.0 if mu.size < 2 else float(2.0 / (mu[1] + mu[-1]))

    def gossip_contraction(self, gamma: float = 1.0) -> float:
        """max_{k>=2} |1 - gamma mu_k|: the disagreement contraction of x <- x - gamma (I - W) x."""
        mu = self.laplacian_eigenvalues
        return 0.0 if mu.size < 2 else float(np.max(np.abs(1.0 - gamma * mu[1:])))

    def describe(self) -> dict[str, Any]:
        """Scalar summary (for tables): workers, edges, degrees, spectrum."""
        deg = self.adjacency.sum(axis=1)
        return {
            "topology": self.name,
            "workers": self.workers,
            "edges": len(self.edges),
            "min_degree": int(deg.min()),
            "max_degree": int(deg.max()),
            "spectral_gap": self.spectral_gap,
            "rho": self.rho,
            "optimal_gossip_step": self.optimal_gossip_step,
        }


def _validate(W: np.ndarray, adjacency: np.ndarray, name: str) -> None:
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape[0] < 1:
        raise ValueError(f"topology {name}: gossip matrix must be square and non-empty, got {W.shape}")
    if adjacency.shape != W.shape:
        raise ValueError(f"topology {name}: adjacency {adjacency.shape} does not match W {W.shape}")
    if not np.all(np.isfinite(W)):
        raise ValueError(f"topology {name}: gossip matrix has non-finite entries")
    if not np.allclose(W, W.T, atol=1e-12):
        raise ValueError(f"topology {name}: gossip matrix must be symmetric")
    if not np.allclose(W.sum(axis=1), 1.0, atol=1e-10):
        raise ValueError(f"topology {name}: gossip matrix rows must sum to 1")
    if np.any(W < -1e-12):
        raise ValueError(f"topology {name}: gossip weights must be non-negative")
    off = W.copy()
    np.fill_diagonal(off, 0.0)
    if not np.array_equal(off > 0, adjacency):
        raise ValueError(f"topology {name}: positive off-diagonal weights must match the adjacency")
    if not _connected(adjacency):
        raise ValueError(f"topology {name}: the graph is not connected, gossip cannot reach consensus")


def _connected(adjacency: np.ndarray) -> bool:
    n = adjacency.shape[0]
    seen = np.zeros(n, dtype=bool)
    seen[0] = True
    frontier = seen.copy()
    while frontier.any():
        frontier = adjacency[frontier].any(axis=0) & ~seen
        seen |= frontier
    return bool(seen.all())


def _as_adjacency(adjacency: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(adjacency)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise ValueError(f"topology {name}: adjacency must be a non-empty square matrix, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"topology {name}: adjacency has non-finite entries")
    if np.any(a < 0):
        raise ValueError(f"topology {name}: adjacency has negative entries")
    a = a != 0
    np.fill_diagonal(a, False)
    if not np.array_equal(a, a.T):
        raise ValueError(f"topology {name}: adjacency must be symmetric (undirected graph)")
    return a


def metropolis_hastings(adjacency: np.ndarray) -> np.ndarray:
    """Metropolis-Hastings gossip matrix: w_ij = 1/(1 + max(d_i, d_j)) on edges, w_ii = 1 - row sum."""
    a = _as_adjacency(adjacency, "metropolis-hastings")
    deg = a.sum(axis=1)
    W = np.where(a, 1.0 / (1.0 + np.maximum(deg[:, None], deg[None, :])), 0.0)
    W[np.diag_indices_from(W)] = 1.0 - W.sum(axis=1)
    return W


def from_adjacency(adjacency: Any, name: str = "custom") -> Topology:
    """Topology with Metropolis-Hastings weights from a networkx graph or a 0/1 (or weighted) matrix.

    Nodes of a networkx graph are numbered in `graph.nodes` order; any non-zero off-diagonal entry
    of a matrix is an edge (the diagonal is ignored).
    """
    if hasattr(adjacency, "nodes") and hasattr(adjacency, "edges"):
        import networkx as nx

        if adjacency.is_directed():
            raise ValueError(f"topology {name}: the networkx graph must be undirected")
        adjacency = nx.to_numpy_array(adjacency, nodelist=list(adjacency.nodes), weight=None)
    a = _as_adjacency(adjacency, name)
    return Topology(name=name, W=metropolis_hastings(a), adjacency=a)


def from_weights(W: Any, name: str = "custom-weights") -> Topology:
    """Topology from a user-given symmetric doubly stochastic gossip matrix (edges = positive w_ij)."""
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"topology {name}: gossip matrix must be square, got shape {W.shape}")
    a = W > 0
    np.fill_diagonal(a, False)
    return Topology(name=name, W=W.copy(), adjacency=a)


def _check_workers(workers: int, minimum: int, kind: str) -> int:
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)):
        raise ValueError(f"{kind}: workers must be an integer, got {workers!r}")
    if workers < minimum:
        raise ValueError(f"{kind}: needs at least {minimum} workers, got {workers}")
    return int(workers)


def ring(workers: int) -> Topology:
    """Bidirectional ring; W = (I + S + S^T)/3 for W >= 3 workers."""
    n = _check_workers(workers, 1, "ring")
    a = np.zeros((n, n), dtype=bool)
    if n > 1:
        idx = np.arange(n)
        a[idx, (idx + 1) % n] = True
        a[(idx + 1) % n, idx] = True
    np.fill_diagonal(a, False)
    return Topology(name=f"ring-{n}", W=metropolis_hastings(a), adjacency=a)


def _torus_shape(n: int) -> tuple[int, int]:
    rows = int(np.sqrt(n))
    while n % rows:
        rows -= 1
    return rows, n // rows


def torus(workers: int, rows: int | None = None) -> Topology:
    """2-D torus of rows x cols workers (rows defaults to the largest divisor <= sqrt(W)).

    Worker r sits at (r // cols, r % cols) and links to its 4 wrap-around grid neighbours; a side
    of length 2 gives one link along it (the graph is simple), a side of length 1 none. The 4x4
    torus has 1/5 per neighbour and self.
    """
    n = _check_workers(workers, 1, "torus")
    if rows is None:
        rows, cols = _torus_shape(n)
    else:
        if rows < 1 or n % rows:
            raise ValueError(f"torus: rows={rows} must be a positive divisor of workers={n}")
        cols = n // rows
    a = np.zeros((n, n), dtype=bool)
    r, c = np.divmod(np.arange(n), cols)
    for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        j = ((r + dr) % rows) * cols + (c + dc) % cols
        a[np.arange(n), j] = True
    np.fill_diagonal(a, False)
    a |= a.T
    return Topology(name=f"torus-{rows}x{cols}", W=metropolis_hastings(a), adjacency=a)


def fully_connected(workers: int) -> Topology:
    """Complete graph; W = 11^T / W (one gossip step is the exact average)."""
    n = _check_workers(workers, 1, "fully-connected")
    a = ~np.eye(n, dtype=bool)
    return Topology(name=f"full-{n}", W=metropolis_hastings(a), adjacency=a)


def star(workers: int, center: int = 0) -> Topology:
    """Star with one hub; MH weights 1/W on every spoke."""
    n = _check_workers(workers, 1, "star")
    if not 0 <= center < n:
        raise ValueError(f"star: center {center} outside 0..{n - 1}")
    a = np.zeros((n, n), dtype=bool)
    a[center, :] = True
    a[:, center] = True
    np.fill_diagonal(a, False)
    return Topology(name=f"star-{n}", W=metropolis_hastings(a), adjacency=a)


def watts_strogatz(workers: int, k: int = 3, p: float = 0.9, seed: int = 1) -> Topology:
    """Connected Watts-Strogatz small world (networkx) with MH weights; defaults as in PowerGossip."""
    import networkx as nx

    n = _check_workers(workers, 2, "watts-strogatz")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"watts-strogatz: rewiring probability p={p} must be in [0, 1]")
    if not 2 <= k < n:
        raise ValueError(f"watts-strogatz: k={k} must satisfy 2 <= k < workers={n}")
    g = nx.connected_watts_strogatz_graph(n, k, p, seed=seed)
    return from_adjacency(g, name=f"watts-strogatz-{n}-k{k}-p{p:g}")


TOPOLOGIES = {
    "ring": ring,
    "torus": torus,
    "full": fully_connected,
    "fully-connected": fully_connected,
    "star": star,
    "ws": watts_strogatz,
    "watts-strogatz": watts_strogatz,
}


def make_topology(name: str | Topology | Any, workers: int | None = None, **kw: Any) -> Topology:
    """Build a topology by name (`ring`, `torus`, `full`, `star`, `ws`, `custom`) for `workers` nodes.

    `custom` takes `adjacency=` (networkx graph or matrix) or `weights=` (a gossip matrix). A
    `Topology` passes through (its size is checked), and a graph or matrix is taken as `custom`.
    """
    if isinstance(name, Topology):
        topo = name
    elif not isinstance(name, str):
        topo = from_adjacency(name)
    elif name == "custom":
        if ("adjacency" in kw) == ("weights" in kw):
            raise ValueError("make_topology('custom'): give exactly one of adjacency= or weights=")
        topo = from_adjacency(kw["adjacency"]) if "adjacency" in kw else from_weights(kw["weights"])
    elif name in TOPOLOGIES:
        if workers is None:
            raise ValueError(f"make_topology({name!r}): workers is required")
        topo = TOPOLOGIES[name](workers, **kw)
    else:
        raise ValueError(f"unknown topology {name!r}; choose one of {sorted(TOPOLOGIES) + ['custom']}")
    if workers is not None and topo.workers != workers:
        raise ValueError(f"topology {topo.name} has {topo.workers} workers, but workers={workers}")
    return topo
