"""Cost of a call from the price table, and a token estimate for logs that carry no token counts.

Token estimate (documented rule): about 4 characters of English text per token, the ratio OpenAI
publishes for its tokenizers, plus 4 tokens of overhead per chat message. It is an estimate, marked as
such wherever it is used; logged counts always win.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from flywheel.settings import SCHEMAS_DIR

PRICE_TABLE = SCHEMAS_DIR / "prices.yaml"
CHARS_PER_TOKEN = 4.0
TOKENS_PER_MESSAGE = 4
# Dated snapshots and variant suffixes that bill like the base model: gpt-4o-2024-08-06, gpt-3.5-turbo-0125,
# claude-3-5-haiku-20241022, llama-3.1-8b-instruct, gemma-2-9b-it.
_SNAPSHOT_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest|preview|instruct|it)$")


@dataclass(frozen=True)
class Price:
    model: str
    provider: str
    input_per_mtok: float
    output_per_mtok: float

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_mtok + tokens_out * self.output_per_mtok) / 1_000_000


class PriceTable:
    def __init__(self, prices: dict[str, Price]) -> None:
        self._prices = prices

    @classmethod
    def load(cls, path: Path = PRICE_TABLE) -> PriceTable:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        per = float(document.get("per_tokens", 1_000_000))
        scale = 1_000_000 / per
        prices: dict[str, Price] = {}
        for model, entry in document["models"].items():
            price = Price(model, entry["provider"], entry["input"] * scale, entry["output"] * scale)
            for name in [model, *entry.get("aliases", [])]:
                prices[name.lower()] = price
        return cls(prices)

    def lookup(self, model: str) -> Price | None:
        name = model.lower().split("/")[-1]  # "openai/gpt-4o" as routers log it
        while name:
            if name in self._prices:
                return self._prices[name]
            stripped = _SNAPSHOT_SUFFIX.sub("", name)
            if stripped == name:
                return None
            name = stripped
        return None


def base_name(model: str) -> str:
    """The model without provider prefix, dated snapshot or variant suffix: gpt-4o-mini-2024-07-18 and
    openai/gpt-4o-mini are both gpt-4o-mini."""
    name = model.lower().split("/")[-1]
    while (stripped := _SNAPSHOT_SUFFIX.sub("", name)) not in (name, ""):
        name = stripped
    return name


@cache
def default_price_table() -> PriceTable:
    return PriceTable.load()


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


def estimate_tokens(messages: list[dict[str, Any]] | str | None) -> int:
    if messages is None:
        return 0
    if isinstance(messages, str):
        return max(1, round(len(messages) / CHARS_PER_TOKEN))
    chars = sum(len(_text_of(m.get("content"))) + len(str(m.get("tool_calls") or "")) for m in messages)
    return round(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages)
