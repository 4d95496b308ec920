"""Eval sets that stand in for the workload: which held-out prompts to keep, how much each one counts, and how
well the set's verdicts match what the logs say of every model.

Choosing: prompts fall into strata by app and by difficulty (the share of known models whose answer met the
quality bar); a stratum's items are drawn in proportion to its size times the spread of outcomes in it (Neyman
allocation), so the budget goes where models disagree, not to prompts every model gets right. Each chosen item
weighs for the prompts of its stratum, so a weighted mean over the set estimates a model's mean over all
traffic. Within a stratum the order is a hash of the cluster id: the same data gives the same set everywhere.

Checking (leave-one-model-out): for each model, the set is chosen again without that model's outcomes, its
accuracy estimated from the set, and compared with its accuracy over all its logged outcomes: the mean absolute
error of those estimates, and the Spearman correlation of the estimated ranking with the full one, per app.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import spearmanr

MIN_SPREAD = 0.15  # a stratum where every known model agreed still gets some items: a new model may not


@dataclass(frozen=True)
class Selection:
    items: np.ndarray      # indices of the chosen prompts
    weights: np.ndarray    # one per item, summing to 1
    strata: list[str]      # one per item: "<app>|<difficulty level>"


def _levels(good: np.ndarray) -> np.ndarray:
    known = ~np.isnan(good)
    share = np.where(known, good, 0).sum(1) / np.maximum(known.sum(1), 1)
    steps = max(1, min(10, good.shape[1]))
    return np.where(known.any(1), np.round(share * steps).astype(int), -1)


def _stable_order(keys: list[str], index: np.ndarray) -> np.ndarray:
    return index[np.argsort([hashlib.md5(keys[i].encode()).hexdigest() for i in index], kind="stable")]


def choose(good: np.ndarray, apps: list[str], keys: list[str], pool: np.ndarray, size: int) -> Selection:
    """Up to `size` prompts from `pool` (a mask) chosen with the outcomes `good` (prompts x models, NaN unknown)."""
    levels = _levels(good)
    labels = np.array([f"{a}|{lv}" for a, lv in zip(apps, levels, strict=True)])
    strata = sorted(set(labels))
    population = np.array([(labels == s).sum() for s in strata], float)
    available = np.array([((labels == s) & pool).sum() for s in strata])
    spread = np.empty(len(strata))
    for h, s in enumerate(strata):
        rows = good[labels == s]
        seen = (~np.isnan(rows)).sum(0)
        rate = (np.nan_to_num(rows).sum(0)[seen > 0] / seen[seen > 0]) if rows.size else np.array([])
        spread[h] = max(MIN_SPREAD, float(np.sqrt((rate * (1 - rate)).mean()))) if rate.size else 0.5
    size = int(min(size, available.sum()))
    # every stratum first gets one item (when the budget allows): a stratum left out would be estimated by the
    # others, and the hardest prompts, rare as they are, differ most from the rest
    allocation = np.where((available > 0) & ((available > 0).sum() <= size), 1, 0)
    want = population * spread * (available > 0)
    # largest remainders, a stratum never asked for more than it has; what one cannot take goes to the others
    while allocation.sum() < size:
        open_ = allocation < available
        share = np.where(open_, want, 0)
        if share.sum() == 0:
            break
        target = share / share.sum() * (size - allocation.sum()) + allocation
        extra = np.minimum(np.floor(target).astype(int), available) - allocation
        if extra.sum() == 0:
            extra[np.argmax(np.where(open_, target - allocation, -np.inf))] = 1
        allocation += np.maximum(extra, 0)
    items, weights, names = [], [], []
    covered = population[allocation > 0].sum()
    for h, s in enumerate(strata):
        if not allocation[h]:
            continue
        chosen = _stable_order(keys, np.nonzero((labels == s) & pool)[0])[:allocation[h]]
        items += chosen.tolist()
        weights += [population[h] / allocation[h] / covered] * len(chosen)
        names += [s] * len(chosen)
    return Selection(np.array(items, int), np.array(weights), names)


def estimate(selection: Selection, outcomes: np.ndarray) -> float:
    """A model's mean outcome over all prompts, from its outcomes (one per prompt, NaN unknown) on the set."""
    values = outcomes[selection.items]
    known = ~np.isnan(values)
    if not known.any():
        return float("nan")
    return float((selection.weights[known] * values[known]).sum() / selection.weights[known].sum())


def bootstrap_interval(selection: Selection, outcomes: np.ndarray, repeats: int = 1000,
                       seed: int = 0) -> tuple[float, float]:
    """95% interval of `estimate`, resampling the set's items (with their weights) with replacement; not within
    strata, where a stratum of one item would look certain."""
    rng = np.random.default_rng(seed)
    values = outcomes[selection.items]
    known = ~np.isnan(values)
    values, weights = values[known], selection.weights[known]
    if not len(values):
        return float("nan"), float("nan")
    pick = rng.integers(0, len(values), (repeats, len(values)))
    draws = (weights[pick] * values[pick]).sum(1) / weights[pick].sum(1)
    return float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))


@dataclass
class Fidelity:
    app: str
    prompts: int
    items: float                       # mean set size over the held-out models
    estimated: dict[str, float]
    logged: dict[str, float]
    mae: float
    spearman: float
    errors: dict[str, float] = field(default_factory=dict)


def leave_one_model_out(quality: np.ndarray, good: np.ndarray, apps: list[str], keys: list[str],
                        models: list[str], pool: np.ndarray, share: float) -> list[Fidelity]:
    """Per app: each model's accuracy estimated from a set of `share` of the app's prompts chosen without that
    model's outcomes, against its mean over all its logged outcomes."""
    out = []
    apps_array = np.array(apps)
    for app in sorted(set(apps)):
        rows = np.nonzero(apps_array == app)[0]
        size = max(1, round(share * len(rows)))
        estimated, logged, sizes = {}, {}, []
        for m, model in enumerate(models):
            outcomes = quality[rows, m]
            if np.isnan(outcomes).all():
                continue
            others = np.delete(good[rows], m, axis=1)
            selection = choose(others, [app] * len(rows), [keys[i] for i in rows], pool[rows], size)
            estimated[model] = estimate(selection, outcomes)
            logged[model] = float(np.nanmean(outcomes))
            sizes.append(len(selection.items))
        names = [m for m in estimated if not np.isnan(estimated[m])]
        errors = {m: abs(estimated[m] - logged[m]) for m in names}
        rho = float(spearmanr([estimated[m] for m in names], [logged[m] for m in names]).statistic) \
            if len(names) > 2 else float("nan")
        out.append(Fidelity(app, len(rows), float(np.mean(sizes)) if sizes else 0.0, estimated, logged,
                            float(np.mean(list(errors.values()))) if errors else float("nan"), rho, errors))
    return out


# -- the report on a release -------------------------------------------------------------------------------------
@dataclass
class ModelScore:
    app: str
    model: str
    items: int
    accuracy: float
    low: float
    high: float


def score_items(apps: list[str], weights: np.ndarray, strata: list[str], outcomes: dict[str, np.ndarray],
                repeats: int = 1000) -> list[ModelScore]:
    """Each model's weighted mean outcome on each app's eval items, with a 95% bootstrap interval."""
    out = []
    apps_array = np.array(apps)
    for app in sorted(set(apps)):
        rows = np.nonzero(apps_array == app)[0]
        selection = Selection(np.arange(len(rows)), weights[rows] / weights[rows].sum(), [strata[i] for i in rows])
        for model, values in sorted(outcomes.items()):
            mine = values[rows]
            if np.isnan(mine).all():
                continue
            low, high = bootstrap_interval(selection, mine, repeats)
            out.append(ModelScore(app, model, int((~np.isnan(mine)).sum()), estimate(selection, mine), low, high))
    return out
