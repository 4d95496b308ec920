"""schemas/replay.yaml, validated on load: an unknown key or a bad value names the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec
import yaml
from msgspec import Meta

from flywheel.pricing import Price, base_name, default_price_table
from flywheel.settings import SCHEMAS_DIR

SETTINGS = SCHEMAS_DIR / "replay.yaml"


class PerMillion(msgspec.Struct, forbid_unknown_fields=True):
    input: Annotated[float, Meta(ge=0)]
    output: Annotated[float, Meta(ge=0)]


class Endpoint(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    base_url: str
    model: str | None = None
    api_key_env: str | None = None
    price: PerMillion | None = None

    @property
    def api_model(self) -> str:
        return self.model or self.name

    def pricing(self) -> Price | None:
        if self.price is not None:
            return Price(self.name, "replay", self.price.input, self.price.output)
        return default_price_table().lookup(self.name)


class Judge(Endpoint, forbid_unknown_fields=True):
    # pointwise: a 1-5 score of the answer alone; pairwise: the answer against the logged one, asked twice with
    # the two in swapped positions, so a judge that favours a position cannot decide the verdict
    mode: Literal["pointwise", "pairwise"] = "pointwise"
    rubric: str | None = None

    @property
    def instructions(self) -> str:
        if self.rubric:
            return self.rubric
        if self.mode == "pairwise":
            return ("Two assistants answered the same request. Which answer is better? Reply with A or B only, "
                    "or TIE when they are equally good.")
        return "Score the answer from 1 (wrong) to 5 (fully correct). Reply with the number only."


class ReplaySettings(msgspec.Struct, forbid_unknown_fields=True):
    candidates: Annotated[list[Endpoint], Meta(min_length=1)]
    budget_usd: Annotated[float, Meta(ge=0)] = 1.0
    concurrency: Annotated[int, Meta(ge=1, le=256)] = 4
    timeout_s: Annotated[float, Meta(gt=0)] = 60.0
    max_retries: Annotated[int, Meta(ge=0, le=20)] = 4
    prompts: Annotated[int, Meta(ge=1)] = 100
    max_tokens: Annotated[int, Meta(ge=1)] = 1024
    temperature: float = 0.0
    judge: Judge | None = None

    def __post_init__(self) -> None:
        names = [c.name for c in self.candidates]
        if len(set(names)) != len(names):
            raise ValueError("two candidates share a name")
        unpriced = [c.name for c in [*self.candidates, *([self.judge] if self.judge else [])] if c.pricing() is None]
        if unpriced:  # the cap cannot hold for a call whose cost is unknown
            raise ValueError(f"no price for {', '.join(unpriced)}: give `price: {{input: ..., output: ...}}` "
                             "(USD per million tokens) or add it to schemas/prices.yaml")


def as_logged(settings: ReplaySettings, logged: list[str]) -> tuple[ReplaySettings, dict[str, str]]:
    """Candidates renamed to the one logged model that is the same model by another name (gpt-4o-mini in the
    settings, gpt-4o-mini-2024-07-18 in the logs): otherwise the replay would ask it every prompt again and the
    router would learn two models that are one. The endpoint is still asked for the name it knows."""
    by_base: dict[str, set[str]] = {}
    for model in logged:
        by_base.setdefault(base_name(model), set()).add(model)
    renamed, candidates = {}, []
    for candidate in settings.candidates:
        same = by_base.get(base_name(candidate.name), set())
        if candidate.name not in logged and len(same) == 1:
            (name,) = same
            renamed[candidate.name] = name
            candidate = msgspec.structs.replace(candidate, name=name, model=candidate.api_model,
                                                price=candidate.price or _price_of(candidate))
        candidates.append(candidate)
    return msgspec.structs.replace(settings, candidates=candidates), renamed


def _price_of(endpoint: Endpoint) -> PerMillion | None:
    price = endpoint.pricing()
    return PerMillion(price.input_per_mtok, price.output_per_mtok) if price else None


def load_settings(path: Path = SETTINGS) -> ReplaySettings:
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return msgspec.convert(document, ReplaySettings)
    except (OSError, yaml.YAMLError, msgspec.ValidationError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from error
