"""A release's `router_examples` as matrices: one row per prompt (cluster), one column per model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from flywheel.router.features import shapes
from flywheel.router.model import Training


@dataclass
class Examples:
    clusters: list[str]
    apps: list[str]
    splits: list[str]
    models: list[str]
    texts: list[str]
    turns: list[int]
    embeddings: np.ndarray   # prompts x 256
    tokens_in: np.ndarray    # prompts: the prompt's tokens (its cheapest known answer's count)
    good: np.ndarray         # prompts x models: meets the bar 1/0, NaN unknown
    quality: np.ndarray      # prompts x models: quality score, NaN unknown
    cost: np.ndarray         # prompts x models: USD, NaN unknown

    def complete(self, models: list[str]) -> Examples:
        """Only the prompts on which every one of `models` has a known outcome and cost, in `models`' order."""
        columns = [self.models.index(m) for m in models]
        rows = ~np.isnan(self.quality[:, columns]).any(1) & ~np.isnan(self.cost[:, columns]).any(1)
        pick = np.nonzero(rows)[0]
        return Examples([self.clusters[i] for i in pick], [self.apps[i] for i in pick],
                        [self.splits[i] for i in pick], list(models),
                        [self.texts[i] for i in pick], [self.turns[i] for i in pick], self.embeddings[pick],
                        self.tokens_in[pick], self.good[np.ix_(pick, columns)], self.quality[np.ix_(pick, columns)],
                        self.cost[np.ix_(pick, columns)])

    def shapes(self) -> np.ndarray:
        return shapes(self.texts, self.turns)

    def training(self) -> Training:
        points = {}
        for m, model in enumerate(self.models):
            known = ~np.isnan(self.cost[:, m])
            points[model] = (self.tokens_in[known], self.cost[known, m])
        return Training(self.models, self.embeddings, self.shapes(), self.good, points)


def read_examples(files: list[Path] | Path) -> Examples:
    """Rows of router_examples (parquet files of one or more splits) pivoted to prompts x models."""
    frame = pl.read_parquet(files if isinstance(files, list) else [files])
    if frame.is_empty():
        raise ValueError(f"no router examples in {files}")
    frame = frame.sort("cluster_id", "model")
    prompts = frame.group_by("cluster_id", maintain_order=True).agg(
        pl.col("app_id").first(), pl.col("split").first(), pl.col("prompt_text").first(), pl.col("n_messages").first(),
        pl.col("prompt_embedding").first(), pl.col("tokens_in").min())
    models = sorted(frame["model"].unique().to_list())
    index = {c: i for i, c in enumerate(prompts["cluster_id"].to_list())}
    rows = np.array([index[c] for c in frame["cluster_id"].to_list()])
    columns = np.array([models.index(m) for m in frame["model"].to_list()])
    shape = (len(prompts), len(models))

    def matrix(values: pl.Series) -> np.ndarray:
        out = np.full(shape, np.nan)
        out[rows, columns] = values.cast(pl.Float64).fill_null(np.nan).to_numpy()
        return out

    good = matrix(frame["meets_bar"])
    good[np.isnan(matrix(frame["quality_score"]))] = np.nan  # no score, no verdict
    return Examples(prompts["cluster_id"].to_list(), prompts["app_id"].to_list(), prompts["split"].to_list(), models,
                    prompts["prompt_text"].fill_null("").to_list(), prompts["n_messages"].fill_null(1).to_list(),
                    np.asarray(prompts["prompt_embedding"].to_list(), dtype=np.float32),
                    prompts["tokens_in"].cast(pl.Float64).fill_null(0).to_numpy(), good,
                    matrix(frame["quality_score"]), matrix(frame["cost_usd"]))
