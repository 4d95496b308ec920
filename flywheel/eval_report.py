"""`flywheel eval report`: every model scored on a release's eval_items, and how far the set can be trusted
(flywheel/evalsets.py), written to FLYWHEEL_HOME/releases/eval_reports/<eval_items version>/."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl

from flywheel import evalsets
from flywheel.curation import load_rules
from flywheel.publish import dataset_folder
from flywheel.releases import resolve
from flywheel.router.examples import read_examples


def _parquets(releases: Path, dataset: str, version: str) -> list[Path]:
    files = sorted((dataset_folder(releases, dataset) / version / "data").glob("*.parquet"))
    if not files:
        raise LookupError(f"{dataset} {version} has no data files")
    return files


def build(releases: Path, version: str | None = None, repeats: int = 1000) -> tuple[Path, dict]:
    eval_version = resolve(releases, "eval_items", version)
    items = pl.read_parquet(_parquets(releases, "eval_items", eval_version)).sort("cluster_id")
    outcomes: dict[str, np.ndarray] = {}
    good: dict[str, np.ndarray] = {}
    for r, row in enumerate(items["model_outcomes"].to_list()):
        for entry in row:
            column = outcomes.setdefault(entry["model"], np.full(len(items), np.nan))
            column[r] = np.nan if entry["quality_score"] is None else entry["quality_score"]
            met = good.setdefault(entry["model"], np.full(len(items), np.nan))
            met[r] = np.nan if entry["meets_bar"] is None else float(entry["meets_bar"])
    router_version = resolve(releases, "router_examples", None)
    examples = read_examples(_parquets(releases, "router_examples", router_version))
    # a model's ease of prompts comes from the other models only: its own outcomes off the set stay unseen
    names = sorted(good)
    item_good = np.column_stack([good[m] for m in names]) if names else np.empty((len(items), 0))
    item_ease = {m: evalsets.ease(np.delete(item_good, i, axis=1)) for i, m in enumerate(names)}
    example_apps = np.array(examples.apps)
    population = {}
    for app in set(items["app_id"].to_list()):
        app_good = examples.good[example_apps == app]
        for model in names:
            others = np.delete(app_good, examples.models.index(model), axis=1) \
                if model in examples.models else app_good
            population[(app, model)] = evalsets.ease(others)
    scores = evalsets.score_items(items["app_id"].to_list(), items["weight"].to_numpy(),
                                  items["difficulty_level"].cast(pl.Utf8).to_list(), outcomes, item_ease,
                                  population, repeats)
    rules = load_rules()
    pool = np.array([split in rules.eval.pool for split in examples.splits])
    fidelity = evalsets.leave_one_model_out(examples.quality, examples.good, examples.apps, examples.clusters,
                                            examples.models, pool, rules.eval.share)
    document = {"eval_items": eval_version, "router_examples": router_version, "share": rules.eval.share,
                "pool": rules.eval.pool, "items": len(items), "scores": [asdict(s) for s in scores],
                "fidelity": [asdict(f) for f in fidelity], **summary(fidelity)}
    folder = releases / "eval_reports" / eval_version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(document, indent=2, default=float) + "\n")
    (folder / "report.md").write_text(markdown(document))
    return folder, document


def summary(fidelity: list[evalsets.Fidelity]) -> dict[str, float]:
    """Fidelity over all apps, each app weighted by its prompts."""
    usable = [f for f in fidelity if not np.isnan(f.mae)]
    if not usable:
        return {"eval_share": float("nan"), "eval_mae": float("nan"), "eval_spearman": float("nan")}
    weights = np.array([f.prompts for f in usable], float)
    spearman = [(f.spearman, w) for f, w in zip(usable, weights, strict=True) if not np.isnan(f.spearman)]
    return {"eval_share": float(sum(f.items for f in usable) / weights.sum()),
            "eval_mae": float(np.average([f.mae for f in usable], weights=weights)),
            "eval_spearman": float(np.average([s for s, _ in spearman], weights=[w for _, w in spearman]))
            if spearman else float("nan")}


def markdown(document: dict) -> str:
    lines = [f"# eval_items {document['eval_items']}: {document['items']} items", "",
             "Each model's accuracy on an app, estimated from its outcomes on the app's items: the mean over all the "
             "app's prompts of a logistic curve of each prompt's ease (how the other models did on it) fitted to "
             "those outcomes (the weighted mean of the outcomes where no other model is known; a weight is the "
             "share of the app's traffic an item stands for), with a 95% bootstrap interval.", "",
             "| app | model | items | accuracy | 95% interval |", "|---|---|---:|---:|---|"]
    lines += [f"| {s['app']} | {s['model']} | {s['items']} | {s['accuracy']:.3f} | {s['low']:.3f} to {s['high']:.3f} |"
              for s in sorted(document["scores"], key=lambda s: (s["app"], -s["accuracy"]))]
    lines += ["", f"## Fidelity (leave-one-model-out, {document['share']:.0%} of each app's prompts from "
              f"{', '.join(document['pool'])})", "",
              "Each model's accuracy estimated from a set chosen without its outcomes, against its accuracy over "
              "all its logged outcomes.", "",
              "| app | prompts | items | mean abs. error | Spearman of the ranking |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {f['app']} | {f['prompts']} | {f['items']:.0f} | {f['mae']:.4f} | {f['spearman']:.3f} |"
              for f in document["fidelity"]]
    lines += ["", f"Over all apps: mean absolute error {document['eval_mae']:.4f}, Spearman "
              f"{document['eval_spearman']:.3f}, {document['eval_share']:.1%} of the prompts.", ""]
    return "\n".join(lines)
