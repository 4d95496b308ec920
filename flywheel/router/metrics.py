"""Cost/quality metrics of routers, on a test set where every model's outcome on every prompt is known.

Definitions (RouteLLM, Ong et al. 2024; RouterBench, Hu et al. 2024):
- a curve is the upper-left envelope of (mean cost, mean quality) points; two operating points can be mixed at
  random, so the envelope is concave, and spending more never lowers quality;
- the hull of single models is the best any fixed model or random mix of models achieves;
- AIQ is a curve's mean quality over a cost range (area under it divided by the range's width);
- PGR at a share of calls to the strongest model is the share of the weakest-to-strongest quality gap recovered
  by sending the router's most-needed prompts there; APGR is its mean over all shares, CPT(x) the smallest share
  of strong calls that recovers x of the gap.
"""

from __future__ import annotations

import numpy as np


def upper_hull(costs: np.ndarray, qualities: np.ndarray) -> np.ndarray:
    """Vertices (cost, quality) of the concave, non-decreasing envelope of the points, cheapest first."""
    order = np.lexsort((-np.asarray(qualities), np.asarray(costs)))
    frontier: list[tuple[float, float]] = []
    for c, q in zip(np.asarray(costs)[order], np.asarray(qualities)[order], strict=True):
        if frontier and q <= frontier[-1][1]:
            continue  # costs more and is no better
        while len(frontier) >= 2:
            (x1, y1), (x2, y2) = frontier[-2], frontier[-1]
            if (y2 - y1) * (c - x1) <= (q - y1) * (x2 - x1):  # the middle point lies on or under the chord
                frontier.pop()
            else:
                break
        frontier.append((float(c), float(q)))
    return np.array(frontier).reshape(-1, 2)


def quality_at(hull: np.ndarray, cost: float | np.ndarray) -> np.ndarray:
    """The envelope's quality at a cost: NaN below its cheapest point, flat beyond its last."""
    cost = np.asarray(cost, float)
    value = np.interp(cost, hull[:, 0], hull[:, 1])
    return np.where(cost < hull[0, 0] - 1e-15, np.nan, value)


def cost_to_reach(hull: np.ndarray, quality: float) -> float | None:
    """The least mean cost at which the envelope reaches a quality, None if it never does."""
    if hull[-1, 1] < quality - 1e-12:
        return None
    if hull[0, 1] >= quality:
        return float(hull[0, 0])
    return float(np.interp(quality, hull[:, 1], hull[:, 0]))


def aiq(hull: np.ndarray, low: float, high: float, steps: int = 2001) -> float:
    """Mean quality over [low, high]; where the envelope does not reach down to a cost it earns nothing."""
    grid = np.linspace(low, high, steps)
    values = np.nan_to_num(quality_at(hull, grid), nan=0.0)
    return float(np.trapezoid(values, grid) / (high - low)) if high > low else float(values[0])


def gap_recovered(preference: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """PGR after sending 0, 1, ..., n prompts to the strong model, most preferred first (ties in prompt order)."""
    order = np.argsort(-np.asarray(preference, float), kind="stable")
    gains = (np.asarray(strong, float) - np.asarray(weak, float))[order]
    quality = (np.asarray(weak, float).sum() + np.r_[0.0, np.cumsum(gains)]) / len(order)
    low, high = np.mean(weak), np.mean(strong)
    if high <= low:
        return np.full(len(order) + 1, np.nan)
    return (quality - low) / (high - low)


def apgr(pgr: np.ndarray) -> float:
    shares = np.linspace(0, 1, len(pgr))
    return float(np.trapezoid(pgr, shares))


def cpt(pgr: np.ndarray, target: float) -> float | None:
    """The smallest share of calls to the strong model that recovers `target` of the gap."""
    reached = np.nonzero(pgr >= target - 1e-12)[0]
    return float(reached[0] / (len(pgr) - 1)) if len(reached) else None


def sweep_points(choices: np.ndarray, quality: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (cost, quality) of each row of `choices` (settings x prompts, a model index per prompt)."""
    rows = np.arange(quality.shape[0])[None, :]
    return cost[rows, choices].mean(1), quality[rows, choices].mean(1)


def hull_gain(choices: np.ndarray, quality: np.ndarray, cost: np.ndarray) -> tuple[float, float, float]:
    """(router AIQ, single-model hull AIQ, the difference) over the cheapest to the most accurate model's cost."""
    single_cost, single_quality = cost.mean(0), quality.mean(0)
    low = single_cost.min()
    high = single_cost[np.lexsort((single_cost, -single_quality))[0]]  # the most accurate (cheapest if tied)
    router_cost, router_quality = sweep_points(choices, quality, cost)
    router = aiq(upper_hull(router_cost, router_quality), low, high)
    singles = aiq(upper_hull(single_cost, single_quality), low, high)
    return router, singles, router - singles


def bootstrap_gain(choices: np.ndarray, quality: np.ndarray, cost: np.ndarray, repeats: int = 1000,
                   seed: int = 0) -> np.ndarray:
    """The hull gain recomputed on prompts drawn with replacement (the router's decisions kept)."""
    rng = np.random.default_rng(seed)
    n = quality.shape[0]
    gains = np.empty(repeats)
    for r in range(repeats):
        pick = rng.integers(0, n, n)
        gains[r] = hull_gain(choices[:, pick], quality[pick], cost[pick])[2]
    return gains
