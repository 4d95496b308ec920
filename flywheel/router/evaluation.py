"""How a router does on held-out prompts against every single model, random mixes of them and the oracle."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flywheel.router import metrics
from flywheel.router.examples import Examples
from flywheel.router.model import RouterModel

# Willingness to pay (USD for a whole extra good answer) from "cheapest always" to "best always".
WILLINGNESS = (0.0, *np.geomspace(1e-7, 1e2, 300).tolist(), math.inf)
MIN_PROMPTS = 10


@dataclass
class Evaluation:
    router_version: str
    prompts: int
    models: list[str]
    single: dict[str, dict[str, float]]                 # model -> cost, quality
    router_points: list[dict[str, float]]               # one per willingness: willingness, cost, quality
    router_hull: list[list[float]]
    single_hull: list[list[float]]
    oracle: dict[str, float]
    weakest: str
    strongest: str
    most_accurate: str
    aiq: float
    aiq_single_hull: float
    aiq_gain_over_hull: float
    aiq_gain_ci: list[float]
    apgr: float
    cpt: dict[str, float | None]
    accuracy_at_quarter_cost_ratio: float
    cost_ratio_at_best_accuracy: float | None
    cost_saved_at_best_accuracy: float | None
    operating_points: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The headline figures as plain numbers (None where a quality is never reached)."""
        figures = self._figures()
        return {k: v if v is None or isinstance(v, int) else float(v) for k, v in figures.items()}

    def _figures(self) -> dict[str, Any]:
        return {"aiq": self.aiq, "aiq_gain_over_hull": self.aiq_gain_over_hull,
                "aiq_gain_ci_low": self.aiq_gain_ci[0], "aiq_gain_ci_high": self.aiq_gain_ci[1],
                "accuracy_at_quarter_cost_ratio": self.accuracy_at_quarter_cost_ratio,
                "cost_ratio_at_best_accuracy": self.cost_ratio_at_best_accuracy, "apgr": self.apgr,
                "cpt_50": self.cpt["50"], "cpt_80": self.cpt["80"], "cpt_95": self.cpt["95"],
                "test_prompts": self.prompts}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=float)


def evaluate(model: RouterModel, test: Examples, *, bootstrap: int = 1000, seed: int = 0) -> Evaluation:
    test = test.complete(model.models)
    if len(test.clusters) < MIN_PROMPTS:
        raise ValueError(f"only {len(test.clusters)} test prompts have an outcome and a cost from every one of the "
                         f"router's {len(model.models)} models (at least {MIN_PROMPTS} are needed): replay the "
                         f"others' answers first (`flywheel replay`)")
    chances = model.chances(test.embeddings, test.shapes())
    expected = model.expected_costs(test.tokens_in)
    choices = np.stack([model.choose(chances, expected, w) for w in WILLINGNESS])
    quality, cost = test.quality, test.cost
    single_cost, single_quality = cost.mean(0), quality.mean(0)
    router_cost, router_quality = metrics.sweep_points(choices, quality, cost)
    router_hull = metrics.upper_hull(router_cost, router_quality)
    single_hull = metrics.upper_hull(single_cost, single_quality)
    best = int(np.lexsort((single_cost, -single_quality))[0])
    weak, strong = int(np.argmin(single_quality)), best
    aiq, aiq_single, gain = metrics.hull_gain(choices, quality, cost)
    gains = metrics.bootstrap_gain(choices, quality, cost, bootstrap, seed) if bootstrap else np.array([gain])
    pgr = metrics.gap_recovered(chances[:, strong] - chances[:, weak], quality[:, weak], quality[:, strong])
    best_cost, best_quality = single_cost[best], single_quality[best]
    at_quarter = metrics.quality_at(router_hull, 0.25 * best_cost)
    reach = metrics.cost_to_reach(router_hull, best_quality)
    good_enough = test.good >= 1
    oracle_pick = np.where(good_enough.any(1), np.argmin(np.where(good_enough, cost, np.inf), 1),
                           np.argmax(quality, 1))
    rows = np.arange(len(quality))
    points = [{"willingness_to_pay": w, "cost": float(c), "quality": float(q)}
              for w, c, q in zip(WILLINGNESS, router_cost, router_quality, strict=True)]
    return Evaluation(
        router_version=model.trained_on.get("router_version", ""), prompts=len(rows), models=model.models,
        single={m: {"cost": float(single_cost[i]), "quality": float(single_quality[i])}
                for i, m in enumerate(model.models)},
        router_points=points, router_hull=router_hull.tolist(), single_hull=single_hull.tolist(),
        oracle={"cost": float(cost[rows, oracle_pick].mean()), "quality": float(quality[rows, oracle_pick].mean())},
        weakest=model.models[weak], strongest=model.models[strong], most_accurate=model.models[best],
        aiq=aiq, aiq_single_hull=aiq_single, aiq_gain_over_hull=gain,
        aiq_gain_ci=[float(np.quantile(gains, 0.025)), float(np.quantile(gains, 0.975))],
        apgr=metrics.apgr(pgr), cpt={str(int(t * 100)): metrics.cpt(pgr, t) for t in (0.5, 0.8, 0.95)},
        accuracy_at_quarter_cost_ratio=float(np.nan_to_num(at_quarter) / best_quality),
        cost_ratio_at_best_accuracy=None if reach is None else float(reach / best_cost),
        cost_saved_at_best_accuracy=None if reach is None else float(1 - reach / best_cost),
        operating_points=_operating_points(model, choices, points, best_quality))


def _operating_points(model: RouterModel, choices: np.ndarray, points: list[dict[str, float]],
                      best_quality: float) -> list[dict[str, Any]]:
    """A few settings worth knowing: the cheapest reaching 90/95/99/100% of the most accurate model's quality."""
    out = []
    for share in (0.90, 0.95, 0.99, 1.0):
        reaching = [i for i, p in enumerate(points) if p["quality"] >= share * best_quality - 1e-12]
        if not reaching:
            continue
        i = min(reaching, key=lambda j: (points[j]["cost"], j))
        calls = np.bincount(choices[i], minlength=len(model.models)) / choices.shape[1]
        out.append({"target": f"{share:.0%} of the most accurate", **points[i],
                    "calls": {m: round(float(c), 3) for m, c in zip(model.models, calls, strict=True) if c > 0}})
    return out


# -- for people -------------------------------------------------------------------------------------------------
def plot(evaluation: Evaluation, target: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5.5), dpi=110)
    for vertices, style, label in ((evaluation.single_hull, dict(ls="--", color="grey"),
                                    "best single model or random mix"),
                                   (evaluation.router_hull, dict(ls="-", color="tab:blue", lw=2), "router")):
        hull = np.array(vertices)
        # mixes are straight lines in linear cost: drawn densely, they show true on the log axis
        grid = np.geomspace(hull[0, 0], hull[-1, 0], 400) if len(hull) > 1 else hull[:, 0]
        axes.plot(grid, metrics.quality_at(hull, grid), label=label, **style)
    points = np.array([[p["cost"], p["quality"]] for p in evaluation.router_points])
    axes.scatter(points[:, 0], points[:, 1], s=6, color="tab:blue", alpha=0.4)
    for name, p in evaluation.single.items():
        axes.scatter([p["cost"]], [p["quality"]], color="black", s=18, zorder=3)
        axes.annotate(name, (p["cost"], p["quality"]), fontsize=7, xytext=(3, -8), textcoords="offset points")
    axes.scatter([evaluation.oracle["cost"]], [evaluation.oracle["quality"]], marker="*", s=120, color="tab:green",
                 label="oracle", zorder=3)
    axes.set_xscale("log")
    axes.set_xlabel("mean cost per request (USD, log scale)")
    axes.set_ylabel("mean quality (share of good answers)")
    axes.set_title(f"router {evaluation.router_version}: {evaluation.prompts} held-out prompts")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target)
    plt.close(figure)
    return target


def markdown(evaluation: Evaluation) -> str:
    e = evaluation

    def number(value: float | None, digits: int = 3) -> str:
        return "never" if value is None else f"{value:.{digits}f}"

    best = e.single[e.most_accurate]
    lines = [
        f"# Router {e.router_version}", "",
        f"Held-out test prompts with every model's outcome: **{e.prompts}**. Quality is the mean quality score "
        "of the chosen model's answer (for graded tasks, accuracy); cost is its logged or estimated USD.", "",
        "| metric | value |", "|---|---|",
        f"| AIQ (mean quality from the cheapest to the most accurate model's cost) | {e.aiq:.4f} |",
        f"| AIQ of the best single model or random mix | {e.aiq_single_hull:.4f} |",
        f"| gain over that hull (bootstrap 95% interval) | {e.aiq_gain_over_hull:+.4f} "
        f"({e.aiq_gain_ci[0]:+.4f} to {e.aiq_gain_ci[1]:+.4f}) |",
        f"| quality at a quarter of {e.most_accurate}'s cost, relative to it | "
        f"{e.accuracy_at_quarter_cost_ratio:.3f} |",
        f"| cost to match {e.most_accurate} ({best['quality']:.3f}), relative to it | "
        f"{number(e.cost_ratio_at_best_accuracy)} |",
        f"| APGR ({e.weakest} → {e.strongest}) | {e.apgr:.3f} |",
        *(f"| CPT({k}%): share of calls to {e.strongest} | {number(v)} |" for k, v in e.cpt.items()),
        f"| oracle (cheapest good model per prompt) | quality {e.oracle['quality']:.3f} at "
        f"${e.oracle['cost']:.6f} |", "",
        "## Single models", "", "| model | mean cost (USD) | quality |", "|---|---:|---:|",
        *(f"| {m} | {p['cost']:.6f} | {p['quality']:.3f} |"
          for m, p in sorted(e.single.items(), key=lambda kv: kv[1]["cost"])), "",
        "## Operating points", "",
        "| target | willingness to pay (USD per good answer) | mean cost | quality | calls |",
        "|---|---:|---:|---:|---|",
        *(f"| {p['target']} | {p['willingness_to_pay']:.3g} | {p['cost']:.6f} | {p['quality']:.3f} | "
          + ", ".join(f"{m} {s:.0%}" for m, s in sorted(p["calls"].items(), key=lambda kv: -kv[1])) + " |"
          for p in e.operating_points), "",
        "![cost/quality curve](curve.png)", "",
    ]
    return "\n".join(lines)
