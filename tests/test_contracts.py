"""The contracts: what a valid event is, and that the published JSON Schemas are derived from them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from flywheel.contracts import ValidationError, json_schemas, validate
from flywheel.pricing import PriceTable, estimate_tokens
from flywheel.settings import SCHEMAS_DIR
from tests.factories import feedback, interaction


def test_published_json_schemas_are_generated_from_the_models():
    for name, schema in json_schemas().items():
        on_disk = json.loads((SCHEMAS_DIR / f"{name}.schema.json").read_text())
        assert on_disk == schema, f"schemas/{name}.schema.json is stale: run `flywheel schemas --write`"


def test_an_interaction_carries_tool_calls_and_tool_messages():
    event = validate(interaction(
        messages=[{"role": "user", "content": "weather?"},
                  {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                        "function": {"name": "weather", "arguments": "{}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
        tools=[{"type": "function", "function": {"name": "weather"}}],
    ))
    assert event.messages[1].tool_calls[0].function.name == "weather"


def test_a_tool_message_must_answer_a_call():
    with pytest.raises(ValidationError, match="tool_call_id"):
        validate(interaction(messages=[{"role": "tool", "content": "x"}]))


def test_naive_timestamps_are_utc():
    event = validate(interaction(timestamp="2026-11-20T10:00:00"))
    assert event.timestamp == datetime(2026, 11, 20, 10, tzinfo=UTC)


def test_a_failed_call_needs_no_response():
    event = validate(interaction(status="error", error="timeout", response=None))
    assert event.response is None


@pytest.mark.parametrize(("changes", "message"), [
    ({"feedback_type": "rating", "thumb": None}, "needs field 'rating'"),
    ({"feedback_type": "rating", "rating": 7, "rating_scale": 5}, "outside 0..5"),
    ({"feedback_type": "task_success"}, "needs field 'success'"),
    ({"feedback_type": "like"}, "feedback_type"),
    ({"thumb": "sideways"}, "thumb"),
])
def test_feedback_values_match_their_type(changes, message):
    with pytest.raises(ValidationError, match=message):
        validate(feedback(**changes))


def test_feedback_ids_are_stable_and_explicit_ids_win():
    one = validate(feedback())
    assert one.stable_id == validate(feedback()).stable_id
    assert one.stable_id != validate(feedback(source="annotator")).stable_id
    assert validate(feedback(feedback_id="mine")).stable_id == "mine"


def test_price_table_fills_cost_for_snapshots_and_router_prefixes():
    table = PriceTable.load()
    assert table.lookup("gpt-4o-2024-08-06").cost(1_000_000, 1_000_000) == pytest.approx(12.5)
    assert table.lookup("openrouter/claude-3-5-haiku-20241022").model == "claude-3.5-haiku"
    assert table.lookup("my-private-model") is None


def test_token_estimate_is_about_four_characters_a_token():
    assert estimate_tokens("x" * 400) == 100
    assert estimate_tokens([{"role": "user", "content": "x" * 400}]) == 104  # + per-message overhead
    assert estimate_tokens([{"role": "user", "content": [{"type": "text", "text": "x" * 40}]}]) == 14
