"""Step-time model of a data-parallel job: compute per step plus the all-reduce time not hidden by it.

A ring all-reduce of S gradient bytes over n ranks with bus bandwidth B and per-hop latency alpha takes

    ring(n) = 2 (n - 1) / n * S / B + alpha (n - 1)

A fraction `overlap` of it runs behind the backward pass; each rank waits for the rest. So a step takes

    T(n, N) = kappa * (C + (1 - overlap) * ring(n, N))

with C the rank's own work per step (its compute), N the number of nodes and kappa the step time outside the
compute/wait split (no_sync probes, heartbeats, data waits), as a ratio to it. The bandwidth term counts only
when the ring leaves a node (N > 1): within one node ranks exchange through shared memory or NVLink, far
faster than the network link B measures, and what that costs shows in the per-hop term.

Fitted on measured runs: C is the mean of the runs' measured compute; (1 - overlap) and (1 - overlap) * alpha
are the bounded least-squares fit of the runs' measured collective wait, which is linear in both; kappa is
the mean ratio of each run's step time to its compute plus wait. The network term needs a run on more than
one node, the latency term a second run of another size: with fewer, `fit` says which run to add.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Any

BAND_QUANTILES = (0.16, 0.84)  # one standard deviation either side, were the predictions normal
DRAWS = 400
SEED = 17  # fixed: the same runs give the same band
HIDDEN = 1e-3  # below this share exposed, the all-reduce counts as hidden and alpha as unknown


class ModelError(ValueError):
    """The runs cannot determine the model; the message names the measurement that is missing."""


@dataclass(frozen=True)
class RunPoint:
    """One measured run, reduced to what the model needs. Times are per step, in seconds."""

    label: str
    world_size: int
    nodes: int
    step_seconds: float  # job-wide: samples per step / throughput
    compute_seconds: float  # a rank's own work, mean over ranks
    wait_seconds: float  # a rank's wait in the gradient all-reduce, mean over ranks
    spread: float  # relative spread (1 sigma) of the run's throughput windows


@dataclass(frozen=True)
class Network:
    gradient_bytes: float  # S: what one all-reduce of the gradients carries
    busbw_bytes_per_s: float  # B: measured all-reduce bus bandwidth between nodes


def bandwidth_seconds(world_size: int, nodes: int, net: Network) -> float:
    """2 (n - 1) / n * S / B for a ring across nodes; 0 within one node (see the module docstring)."""
    if nodes <= 1 or world_size <= 1:
        return 0.0
    return 2.0 * (world_size - 1) / world_size * net.gradient_bytes / net.busbw_bytes_per_s


@dataclass(frozen=True)
class StepModel:
    compute_seconds: float
    exposed: float  # 1 - overlap
    latency_exposed: float  # (1 - overlap) * alpha, seconds per hop
    other_ratio: float  # kappa
    network: Network

    @property
    def overlap(self) -> float:
        return 1.0 - self.exposed

    @property
    def alpha_seconds(self) -> float | None:
        """Per-hop latency; None when all communication was hidden (no wait to tell it by)."""
        return self.latency_exposed / self.exposed if self.exposed > HIDDEN else None

    def ring_seconds(self, world_size: int, nodes: int) -> float | None:
        alpha = self.alpha_seconds
        if alpha is None:
            return None
        return bandwidth_seconds(world_size, nodes, self.network) + alpha * max(0, world_size - 1)

    def wait_seconds(self, world_size: int, nodes: int) -> float:
        return self.exposed * bandwidth_seconds(world_size, nodes, self.network) + self.latency_exposed * max(
            0, world_size - 1
        )

    def comm_share(self, world_size: int, nodes: int) -> float:
        """The share of a rank's step spent waiting in the all-reduce (the probe's overhead ratio)."""
        wait = self.wait_seconds(world_size, nodes)
        return wait / (self.compute_seconds + wait)

    def step_seconds(self, world_size: int, nodes: int) -> float:
        return self.other_ratio * (self.compute_seconds + self.wait_seconds(world_size, nodes))

    def as_dict(self) -> dict[str, Any]:
        return {
            "compute_seconds": self.compute_seconds,
            "overlap_ratio": self.overlap,
            "alpha_seconds": self.alpha_seconds,
            "exposed_latency_seconds": self.latency_exposed,
            "other_ratio": self.other_ratio,
            "gradient_bytes": self.network.gradient_bytes,
            "busbw_bytes_per_s": self.network.busbw_bytes_per_s,
        }


def fit(points: list[RunPoint], net: Network) -> StepModel:
    """The model that best explains the runs (module docstring); ModelError when they cannot determine it."""
    import numpy as np
    from scipy.optimize import lsq_linear

    if not points:
        raise ModelError("no measured run to fit on")
    bad = [p.label for p in points if p.step_seconds <= 0 or p.compute_seconds <= 0]
    if bad:
        raise ModelError(f"{', '.join(bad)}: no positive step or compute time measured")
    if not any(p.nodes > 1 and p.world_size > 1 for p in points):
        raise ModelError("no run on more than one node: the network term (S/B) cannot be fitted")
    design = np.array([[bandwidth_seconds(p.world_size, p.nodes, net), p.world_size - 1.0] for p in points])
    if np.linalg.matrix_rank(design) < 2:
        sizes = sorted({(p.nodes, p.world_size) for p in points})
        raise ModelError(
            f"the runs cover one shape only ({', '.join(f'{n} node(s) x {w}' for n, w in sizes)}): "
            "overlap and per-hop latency cannot be told apart"
        )
    waits = np.array([p.wait_seconds for p in points])
    # Each run weighs by how steady it was: a noisy run's wait says less.
    weights = np.array([1.0 / max(p.spread, 0.01) for p in points])
    # Bounded-variable least squares: exact on the bounds (a fully exposed or fully hidden all-reduce).
    bounds = ([0.0, 0.0], [1.0, np.inf])
    solved = lsq_linear(design * weights[:, None], waits * weights, bounds=bounds, method="bvls")
    exposed, latency = (float(v) for v in solved.x)
    return StepModel(
        compute_seconds=statistics.fmean(p.compute_seconds for p in points),
        exposed=exposed,
        latency_exposed=latency,
        other_ratio=statistics.fmean(p.step_seconds / (p.compute_seconds + p.wait_seconds) for p in points),
        network=net,
    )


def refits(points: list[RunPoint], net: Network, count: int = DRAWS) -> list[StepModel]:
    """The model refitted on `count` draws of the runs, each measured time drawn from a normal around it
    with the run's relative spread: what the runs' noise makes of the fit, for the prediction's band."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    models = []
    for _ in range(count):
        drawn = []
        for p in points:
            z = rng.standard_normal(3)
            drawn.append(
                replace(
                    p,
                    step_seconds=p.step_seconds * max(0.05, 1 + p.spread * z[0]),
                    compute_seconds=p.compute_seconds * max(0.05, 1 + p.spread * z[1]),
                    wait_seconds=p.wait_seconds * max(0.0, 1 + p.spread * z[2]),
                )
            )
        models.append(fit(drawn, net))
    return models


@dataclass(frozen=True)
class Band:
    """A predicted figure and its band (BAND_QUANTILES of the refitted models' predictions)."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def band(value: float, draws: list[float]) -> Band:
    import numpy as np

    low, high = (float(q) for q in np.quantile(draws, BAND_QUANTILES))
    return Band(value, min(low, value), max(high, value))
