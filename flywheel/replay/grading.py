"""Grading a replayed answer: a verifiable check where the prompt has a reference answer, else an LLM judge.

Checks, first that applies: a JSON-schema response format (the answer must be JSON that the schema accepts);
a numeric reference (the final numbers must be equal); otherwise the same text, ignoring case and spacing.
The final answer of a text is its JSON `answer` field when it has one, else its last number.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_JSON_BLOCK = re.compile(r"\{.*\}", re.DOTALL)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_SCORE = re.compile(r"\b([1-5])\b")


@dataclass(frozen=True)
class Grade:
    success: bool
    check: str          # numeric | json_schema | exact


def final_answer(text: str | None) -> str | None:
    if not text:
        return None
    block = _JSON_BLOCK.search(text)
    if block:
        try:
            value = json.loads(block.group(0))
            if isinstance(value, dict) and "answer" in value:
                return str(value["answer"]).strip()
        except ValueError:
            pass
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else text.strip()


def _number(text: str | None) -> float | None:
    found = _NUMBER.findall(text or "")
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def check(answer: str | None, reference: str | None, response_format: dict[str, Any] | None = None) -> Grade | None:
    """A verifiable verdict, or None when nothing can be verified (then a judge decides)."""
    schema = ((response_format or {}).get("json_schema") or {}).get("schema")
    if schema is not None:
        import jsonschema

        try:
            jsonschema.validate(json.loads(answer or ""), schema)
            return Grade(True, "json_schema")
        except (ValueError, jsonschema.ValidationError):
            return Grade(False, "json_schema")
    if reference is None:
        return None
    expected, given = final_answer(reference), final_answer(answer)
    want, got = _number(expected), _number(given)
    if want is not None:
        return Grade(got is not None and abs(got - want) <= 1e-6 * max(1.0, abs(want)), "numeric")
    return Grade(" ".join((given or "").lower().split()) == " ".join((expected or "").lower().split()), "exact")


def judge_messages(rubric: str, messages: list[dict[str, Any]], answer: str) -> list[dict[str, Any]]:
    request = "\n".join(f"{m.get('role')}: {m.get('content')}" for m in messages if m.get("role") != "system")
    return [{"role": "system", "content": rubric},
            {"role": "user", "content": f"Request:\n{request}\n\nAnswer:\n{answer}\n\nScore (1-5):"}]


def judge_score(reply: str | None) -> int | None:
    found = _SCORE.search(reply or "")
    return int(found.group(1)) if found else None
