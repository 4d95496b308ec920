"""The router: each model's probability of meeting the quality bar on a prompt, and the model to call.

Production logs are sparse (one model answered each prompt) and training sets are small, so the estimate pools
what all models say about a prompt before it asks what one model says:

1. how much easier than usual a prompt is (its known models' outcomes minus their usual success rate), learned
   from the prompt's embedding and shape by ridge regression; its out-of-fold predictions calibrate
2. each model's chance as a logistic function of that ease (two numbers per model), then
3. the prompt's nearest training prompts by embedding: how much better or worse than (2) expected there each
   model did, added to (2) and shrunk towards zero as if there were `prior_strength` more neighbours. Only the
   surprise is borrowed from neighbours, not their outcomes: where neighbours are unrelated prompts (an embedding
   that does not see what makes a prompt hard) their surprises cancel and a confident calibrated chance stays
   confident, instead of being pulled to the neighbours' average; a model seen rarely near a prompt keeps (2).

The decision weighs chance against expected cost (each model's cost as a linear function of the prompt's
tokens) at a willingness to pay: the USD one would pay for a whole extra good answer. Numpy only: a decision
takes well under a millisecond once the prompt is embedded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flywheel import logistic
from flywheel.pricing import estimate_tokens
from flywheel.router.features import SHAPE_FEATURES, features, prompt_text


@dataclass(frozen=True)
class RouterConfig:
    ridge_alpha: float = 10.0      # how strongly the ease regression is pulled towards "ordinary"
    neighbours: int = 50           # training prompts consulted per decision
    prior_strength: float = 50.0   # how many neighbours the calibrated chance counts as
    folds: int = 5                 # for the out-of-fold ease that calibrates each model
    max_bank: int = 50_000         # training prompts kept for the neighbour search (keeps decisions fast)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Training:
    """What a router learns from: one row per training prompt, one column per model (NaN: not known)."""
    models: list[str]
    embeddings: np.ndarray          # prompts x 256
    shapes: np.ndarray              # prompts x len(SHAPE_FEATURES)
    good: np.ndarray                # prompts x models, 1.0 / 0.0 / NaN
    cost_points: dict[str, tuple[np.ndarray, np.ndarray]]  # model -> (tokens_in, cost_usd) of its answers


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    mean_x, mean_y = x.mean(0), y.mean()
    xc = x - mean_x
    weights = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - mean_y))
    return weights, float(mean_y - mean_x @ weights)


@dataclass
class RouterModel:
    models: list[str]
    config: RouterConfig
    shape_mean: np.ndarray
    shape_scale: np.ndarray
    ease_weights: np.ndarray
    ease_bias: float
    calibration: np.ndarray          # models x 2: intercept, slope on ease
    bank: np.ndarray                 # bank prompts x 256 (float32)
    bank_good: np.ndarray            # bank prompts x models (NaN unknown)
    bank_expected: np.ndarray | None  # bank prompts x models: (2)'s out-of-fold chance (None: a router from
                                      # before it was kept, which mixes outcomes with (2) as it did then)
    cost_lines: np.ndarray           # models x 2: USD per request = a + b * tokens_in
    trained_on: dict[str, Any] = field(default_factory=dict)

    # -- learning ----------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, training: Training, config: RouterConfig | None = None,
            trained_on: dict[str, Any] | None = None) -> RouterModel:
        config = config or RouterConfig()
        good, n_models = training.good, len(training.models)
        if good.shape[0] < config.folds * 2:
            raise ValueError(f"a router needs at least {config.folds * 2} training prompts with outcomes; "
                             f"there are {good.shape[0]}")
        known = ~np.isnan(good)
        usual = np.nanmean(np.where(known, good, np.nan), axis=0)
        usual = np.where(np.isnan(usual), 0.5, usual)
        # ease: how much better than usual the prompt's known models did, shrunk by one pseudo-model at zero
        ease = np.nansum(np.where(known, good - usual, 0.0), axis=1) / (known.sum(1) + 1)
        shape_mean = training.shapes.mean(0)
        shape_scale = training.shapes.std(0) + 1e-6
        x = np.c_[training.embeddings, (training.shapes - shape_mean) / shape_scale]
        out_of_fold = np.zeros(len(x))
        fold = np.arange(len(x)) % config.folds
        for k in range(config.folds):
            weights, bias = _ridge(x[fold != k], ease[fold != k], config.ridge_alpha)
            out_of_fold[fold == k] = x[fold == k] @ weights + bias
        weights, bias = _ridge(x, ease, config.ridge_alpha)
        scale = out_of_fold.std() + 1e-9  # calibrate on a unit scale: the logistic's slope stays well-conditioned
        calibration = np.zeros((n_models, 2))
        for m in range(n_models):
            rows = known[:, m]
            y = good[rows, m]
            if rows.sum() == 0:
                calibration[m] = (0.0, 0.0)
            elif y.min() == y.max():  # never (or always) good: its smoothed rate, whatever the prompt
                rate = (y.sum() + 0.5) / (len(y) + 1)
                calibration[m] = (np.log(rate / (1 - rate)), 0.0)
            else:
                intercept, slope = logistic.fit(out_of_fold[rows] / scale, y)
                calibration[m] = (intercept, slope / scale)
        expected = logistic.sigmoid(calibration[:, 0][None, :] + out_of_fold[:, None] * calibration[:, 1][None, :])
        keep = np.arange(len(x))
        if len(keep) > config.max_bank:  # a stable spread-out subset, not the first ones
            keep = np.sort(np.random.default_rng(0).choice(len(x), config.max_bank, replace=False))
        cost_lines = np.zeros((n_models, 2))
        for m, model in enumerate(training.models):
            tokens, cost = training.cost_points.get(model, (np.empty(0), np.empty(0)))
            ok = ~np.isnan(cost)
            tokens, cost = tokens[ok], cost[ok]
            if len(cost) == 0:
                cost_lines[m] = (np.inf, 0.0)  # no price known: never chosen for being cheap
            elif len(cost) < 3 or np.ptp(tokens) == 0:
                cost_lines[m] = (cost.mean(), 0.0)
            else:
                slope, intercept = np.polyfit(tokens, cost, 1)
                cost_lines[m] = (intercept, slope) if slope >= 0 else (cost.mean(), 0.0)
        return cls(list(training.models), config, shape_mean.astype(np.float32), shape_scale.astype(np.float32),
                   weights.astype(np.float32), bias, calibration, training.embeddings[keep].astype(np.float32),
                   good[keep].astype(np.float32), expected[keep].astype(np.float32), cost_lines,
                   dict(trained_on or {}))

    # -- predicting --------------------------------------------------------------------------------------------
    def chances(self, embeddings: np.ndarray, shapes: np.ndarray) -> np.ndarray:
        """prompts x models: the probability that each model's answer meets the quality bar."""
        x = np.c_[embeddings, (shapes - self.shape_mean) / self.shape_scale]
        ease = x @ self.ease_weights + self.ease_bias
        calibrated = logistic.sigmoid(self.calibration[:, 0][None, :] + ease[:, None] * self.calibration[:, 1][None, :])
        k = min(self.config.neighbours, len(self.bank))
        if k == 0:
            return calibrated
        similarity = embeddings @ self.bank.T
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        outcomes = self.bank_good[nearest]                        # prompts x k x models
        seen = ~np.isnan(outcomes)
        strength = self.config.prior_strength
        if self.bank_expected is None:
            return (np.where(seen, outcomes, 0).sum(1) + strength * calibrated) / (seen.sum(1) + strength)
        surprise = np.where(seen, outcomes - self.bank_expected[nearest], 0).sum(1)
        return np.clip(calibrated + surprise / (seen.sum(1) + strength), 1e-3, 1 - 1e-3)

    def expected_costs(self, tokens_in: np.ndarray) -> np.ndarray:
        """prompts x models: the expected USD of each model's answer (inf where no price is known)."""
        return self.cost_lines[:, 0][None, :] + np.asarray(tokens_in, float)[:, None] * self.cost_lines[:, 1][None, :]

    def choose(self, chances: np.ndarray, costs: np.ndarray, willingness_to_pay: float | None) -> np.ndarray:
        """Per prompt, the index of the model with the best chance minus cost / willingness (None: best chance;
        0: the cheapest). Ties go to the cheaper model."""
        costs = np.where(np.isfinite(costs), costs, 1e9)
        if willingness_to_pay is None or np.isinf(willingness_to_pay):
            value = chances - 1e-12 * costs
        elif willingness_to_pay <= 0:
            value = -costs
        else:
            value = chances - costs / willingness_to_pay
        return np.argmax(value, axis=1)

    def predict_messages(self, conversations: list[list[dict[str, Any]]]) -> tuple[np.ndarray, np.ndarray]:
        texts = [prompt_text(m) for m in conversations]
        embeddings, shapes = features(texts, [len(m) for m in conversations])
        tokens = np.array([estimate_tokens(m) for m in conversations], float)
        return self.chances(embeddings, shapes), self.expected_costs(tokens)

    # -- storing -----------------------------------------------------------------------------------------------
    _ARRAYS = ("shape_mean", "shape_scale", "ease_weights", "calibration", "bank", "bank_good", "bank_expected",
               "cost_lines")

    def digest(self) -> str:
        h = hashlib.sha256(json.dumps([self.models, self.config.as_dict(), self.ease_bias]).encode())
        for name in self._ARRAYS:
            if getattr(self, name) is not None:
                h.update(np.ascontiguousarray(getattr(self, name)).tobytes())
        return h.hexdigest()

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / "router.npz", **{name: getattr(self, name) for name in self._ARRAYS
                                                      if getattr(self, name) is not None})
        (folder / "router.json").write_text(json.dumps({
            "models": self.models, "config": self.config.as_dict(), "ease_bias": self.ease_bias,
            "shape_features": list(SHAPE_FEATURES), "trained_on": self.trained_on, "digest": self.digest(),
        }, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> RouterModel:
        document = json.loads((folder / "router.json").read_text())
        with np.load(folder / "router.npz") as arrays:
            loaded = {name: arrays.get(name) for name in cls._ARRAYS}
        model = cls(document["models"], RouterConfig(**document["config"]), ease_bias=document["ease_bias"],
                    trained_on=document.get("trained_on", {}), **loaded)
        if model.digest() != document["digest"]:
            raise ValueError(f"{folder}: the router's arrays do not match its router.json (a damaged copy?)")
        return model
