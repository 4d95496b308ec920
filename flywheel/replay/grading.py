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
_CHOICE = re.compile(r"\b(A|B|TIE)\b", re.IGNORECASE)


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


def _request(messages: list[dict[str, Any]]) -> str:
    return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in messages if m.get("role") != "system")


def judge_messages(rubric: str, messages: list[dict[str, Any]], answer: str) -> list[dict[str, Any]]:
    request = _request(messages)
    return [{"role": "system", "content": rubric},
            {"role": "user", "content": f"Request:\n{request}\n\nAnswer:\n{answer}\n\nScore (1-5):"}]


def judge_score(reply: str | None) -> int | None:
    found = _SCORE.search(reply or "")
    return int(found.group(1)) if found else None


def pairwise_messages(rubric: str, messages: list[dict[str, Any]], first: str, second: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": rubric},
            {"role": "user", "content": f"Request:\n{_request(messages)}\n\nAnswer A:\n{first}\n\n"
                                        f"Answer B:\n{second}\n\nBetter answer (A, B or TIE):"}]


def pairwise_choice(reply: str | None) -> str | None:
    found = _CHOICE.search(reply or "")
    return found.group(1).upper() if found else None


def pairwise_rating(candidate_first: str | None, candidate_second: str | None) -> int | None:
    """Both orders' verdicts on the candidate (A in the first, B in the second) against the logged answer: 3 when
    it won both, 1 when it lost both, 2 for a tie or verdicts that follow the position; None if one is unreadable."""
    if candidate_first is None or candidate_second is None:
        return None
    points = {"A": 1, "TIE": 0, "B": -1}[candidate_first] + {"B": 1, "TIE": 0, "A": -1}[candidate_second]
    return 3 if points == 2 else 1 if points == -2 else 2
