"""Eval sets that stand in for the workload: which held-out prompts to keep, how much each one counts, and how
well the set's verdicts match what the logs say of every model.

Choosing: prompts fall into strata by app and by difficulty (the share of known models whose answer met the
quality bar); a stratum's items are drawn in proportion to its size times the spread of outcomes in it (Neyman
allocation), so the budget goes where models disagree, not to prompts every model gets right. Each chosen item
weighs for the prompts of its stratum, so a weighted mean over the set estimates a model's mean over all
traffic. Within a stratum the order is a hash of the cluster id: the same data gives the same set everywhere.

Estimating, as item-response-theory methods do (tinyBenchmarks): the other models' outcomes say how easy every
prompt of the app is, the set says how able the model is. A model's chance on a prompt is a logistic curve of the
prompt's ease fitted to its outcomes on the set, and its accuracy is the curve's mean over every prompt. Two
numbers learnt from the set instead of one rate per stratum: on the shared GSM8K sample this lowers the error of
the ranking most (bench/bench_router.py). Without other models' outcomes it is the weighted mean.

Checking (leave-one-model-out): for each model, the set is chosen again without that model's outcomes, its
accuracy estimated from the set (the ease of prompts from the other models only), and compared with its accuracy
over all its logged outcomes: the mean absolute error of those estimates, and the Spearman correlation of the
estimated ranking with the full one, per app.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import spearmanr

from flywheel import logistic

# A stratum where every known model agreed still gets some items (a new model may not agree), but few: on the
# shared sample, over 60 orders, 0.05 to 0.12 gave the same error and ranking within noise; 0.02 erred more, 0.15
# erred more and ranked worse.
MIN_SPREAD = 0.08
MIN_CURVE_ITEMS = 10  # fewer set items of known ease than this: the weighted mean, not a curve


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


def ease(good: np.ndarray) -> np.ndarray:
    """Per prompt (a row of `good`, prompts x models, NaN unknown): how easy the known models found it, as the
    log-odds of the share of them that met the bar, smoothed by half a model each way so that all or none stays
    finite; NaN where no model is known."""
    known = ~np.isnan(good)
    share = (np.where(known, good, 0).sum(1) + 0.5) / (known.sum(1) + 1)
    return np.where(known.any(1), np.log(share / (1 - share)), np.nan)


def estimate(selection: Selection, outcomes: np.ndarray, ease: np.ndarray | None = None,
             population: np.ndarray | None = None) -> float:
    """A model's mean outcome over all prompts, from its outcomes on the set (`outcomes`, NaN unknown, indexed by
    `selection.items`). With `ease` (aligned with `outcomes`, from the other models only) and `population` (the
    ease of every prompt of the app; `ease` itself when omitted), the mean of the model's logistic curve over the
    population; prompts of unknown ease count at the weighted mean of the set's items of unknown ease."""
    values = outcomes[selection.items]
    known = ~np.isnan(values)
    if not known.any():
        return float("nan")
    weighted = float((selection.weights[known] * values[known]).sum() / selection.weights[known].sum())
    if ease is None:
        return weighted
    population = ease if population is None else population
    item_ease = ease[selection.items]
    fitted = known & ~np.isnan(item_ease)
    rated = ~np.isnan(population)
    if fitted.sum() < MIN_CURVE_ITEMS or not rated.any():
        return weighted
    # unweighted: the set over-samples the prompts where models disagree, which is where the curve is learnt
    intercept, slope = logistic.fit(item_ease[fitted], values[fitted])
    curve = float(logistic.sigmoid(intercept + slope * population[rated]).mean())
    rest = known & np.isnan(item_ease)
    unrated = float((selection.weights[rest] * values[rest]).sum() / selection.weights[rest].sum()) \
        if rest.any() else weighted
    return float(rated.mean() * curve + (1 - rated.mean()) * unrated)


def bootstrap_interval(selection: Selection, outcomes: np.ndarray, ease: np.ndarray | None = None,
                       population: np.ndarray | None = None, repeats: int = 1000,
                       seed: int = 0) -> tuple[float, float]:
    """95% interval of `estimate`, resampling the set's items (with their weights) with replacement; not within
    strata, where a stratum of one item would look certain."""
    rng = np.random.default_rng(seed)
    if np.isnan(outcomes[selection.items]).all():
        return float("nan"), float("nan")
    size = len(selection.items)
    draws = []
    for _ in range(repeats):
        pick = rng.integers(0, size, size)
        draw = estimate(Selection(selection.items[pick], selection.weights[pick], []), outcomes, ease, population)
        if not np.isnan(draw):
            draws.append(draw)
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
            estimated[model] = estimate(selection, outcomes, ease(others))
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
                item_ease: dict[str, np.ndarray] | None = None,
                population: dict[tuple[str, str], np.ndarray] | None = None,
                repeats: int = 1000) -> list[ModelScore]:
    """Each model's estimated accuracy on each app from its outcomes on the app's items, with a 95% bootstrap
    interval. `item_ease[model]`: each item's ease from the other models; `population[(app, model)]`: the ease of
    every prompt of the app from the other models; without them, the weighted mean."""
    out = []
    apps_array = np.array(apps)
    for app in sorted(set(apps)):
        rows = np.nonzero(apps_array == app)[0]
        selection = Selection(np.arange(len(rows)), weights[rows] / weights[rows].sum(), [strata[i] for i in rows])
        for model, values in sorted(outcomes.items()):
            mine = values[rows]
            if np.isnan(mine).all():
                continue
            everyone = (population or {}).get((app, model))  # without it, the items' ease alone is no population
            ease_of_items = item_ease[model][rows] if everyone is not None and model in (item_ease or {}) else None
            low, high = bootstrap_interval(selection, mine, ease_of_items, everyone, repeats)
            out.append(ModelScore(app, model, int((~np.isnan(mine)).sum()),
                                  estimate(selection, mine, ease_of_items, everyone), low, high))
    return out
