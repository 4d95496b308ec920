"""Route requests in production with a published router.

    from flywheel.route import Router
    router = Router.load()                       # FLYWHEEL_HOME's latest router (or a folder)
    route = router.decide(messages)              # route.model, route.scores, route.router_version
    client = capture(OpenAI(), sink, router=router)
    client.chat.completions.create(model="flywheel:auto", messages=messages)

A decision embeds the user's last message, asks the router each model's chance of a good answer and its
expected cost, and takes the best chance minus cost over the willingness to pay (USD for a whole extra good
answer). A share of requests (`exploration`) goes to a random other model, so that every model keeps being
measured on current traffic and the next release's router learns from it; those decisions say so.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flywheel.capture import AUTO
from flywheel.router.model import RouterModel
from flywheel.router.store import load_routing, router_path

__all__ = ["AUTO", "Route", "Router"]


@dataclass(frozen=True)
class Route:
    model: str
    router_version: str
    scores: dict[str, float]          # each candidate's chance of meeting the quality bar
    expected_cost_usd: float | None
    willingness_to_pay: float
    explored: bool                    # chosen at random, not for its score
    decision_ms: float

    def as_metadata(self) -> dict[str, Any]:
        return {"router_version": self.router_version, "chosen": self.model, "explored": self.explored,
                "willingness_to_pay": self.willingness_to_pay, "decision_ms": round(self.decision_ms, 3),
                "scores": {m: round(s, 4) for m, s in self.scores.items()},
                "expected_cost_usd": self.expected_cost_usd}


class Router:
    def __init__(self, model: RouterModel, *, willingness_to_pay: float, exploration: float,
                 candidates: list[str] | None = None, seed: int | None = None) -> None:
        unknown = set(candidates or []) - set(model.models)
        if unknown:
            raise ValueError(f"the router knows nothing of {', '.join(sorted(unknown))}; it was trained on "
                             f"{', '.join(model.models)}")
        if not 0 <= exploration < 1:
            raise ValueError(f"exploration is a share of requests in [0, 1); got {exploration}")
        self.model = model
        self.version = model.trained_on.get("router_version", "")
        self.willingness_to_pay = willingness_to_pay
        self.exploration = exploration
        self._columns = np.array([model.models.index(m) for m in (candidates or model.models)])
        self._random = random.Random(seed)

    @classmethod
    def load(cls, where: str | Path | None = None, *, willingness_to_pay: float | None = None,
             exploration: float | None = None, candidates: list[str] | None = None,
             seed: int | None = None) -> Router:
        """A router folder, or a FLYWHEEL_HOME's latest (None: this environment's home); settings default to
        schemas/router.yaml's `routing:`."""
        folder = Path(where) if where is not None else None
        if folder is None or not (folder / "router.json").exists():
            from flywheel.settings import Home

            home = Home.from_env(folder) if folder is not None else Home.from_env()
            folder = router_path(home.releases)
        settings = load_routing()
        return cls(RouterModel.load(folder),
                   willingness_to_pay=settings.get("willingness_to_pay", 0.01) if willingness_to_pay is None
                   else willingness_to_pay,
                   exploration=settings.get("exploration", 0.0) if exploration is None else exploration,
                   candidates=candidates, seed=seed)

    def decide(self, messages: list[dict[str, Any]], *, willingness_to_pay: float | None = None) -> Route:
        started = time.perf_counter()
        wtp = self.willingness_to_pay if willingness_to_pay is None else willingness_to_pay
        chances, costs = self.model.predict_messages([messages])
        chances, costs = chances[:, self._columns], costs[:, self._columns]
        pick = int(self.model.choose(chances, costs, wtp)[0])
        explored = len(self._columns) > 1 and self._random.random() < self.exploration
        if explored:
            pick = self._random.choice([i for i in range(len(self._columns)) if i != pick])
        names = [self.model.models[c] for c in self._columns]
        cost = float(costs[0, pick])
        return Route(names[pick], self.version, {n: float(p) for n, p in zip(names, chances[0], strict=True)},
                     cost if np.isfinite(cost) else None, wtp, explored, (time.perf_counter() - started) * 1000)
