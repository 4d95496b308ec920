"""What the router sees of a prompt before any model answers: the offline embedding of the user's last message
(flywheel.embed, the same vectors as `router_examples.prompt_embedding`) and a few shape statistics that track
how hard a request is (length, how many numbers and sentences, code, how many turns)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from flywheel.embed import embed

SHAPE_FEATURES = ("log_chars", "log_words", "numbers", "long_numbers", "sentences", "questions", "code", "turns")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")


def prompt_text(messages: list[dict[str, Any]]) -> str:
    """The user's last message, as the marts take it (text parts of a multi-part content joined)."""
    for message in reversed(messages or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def shape(text: str, turns: int) -> list[float]:
    numbers = _NUMBER.findall(text)
    return [np.log1p(len(text)), np.log1p(len(text.split())), len(numbers) / 10,
            sum(len(n) > 3 for n in numbers) / 5, len(_SENTENCE_END.findall(text)) / 10, text.count("?"),
            float("```" in text), turns / 10]


def shapes(texts: list[str], turns: list[int]) -> np.ndarray:
    return np.asarray([shape(t or "", n or 1) for t, n in zip(texts, turns, strict=True)], dtype=np.float32)


def features(texts: list[str], turns: list[int], embeddings: np.ndarray | None = None) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """(embeddings, shape statistics) of prompts; pass the embeddings when they are already known."""
    vectors = embed(texts) if embeddings is None else np.asarray(embeddings, dtype=np.float32)
    return vectors, shapes(texts, turns)
