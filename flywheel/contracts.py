"""The data contracts: an interaction event and a feedback event.

These pydantic models are the single source of the contracts. The JSON Schemas in `schemas/` are
generated from them (`flywheel schemas --write`) and a test keeps the two in step.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

SCHEMA_VERSION = "1"

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
NonEmpty = Annotated[str, Field(min_length=1, max_length=512)]


class _Contract(BaseModel):
    # Unknown top-level keys are a contract error, not silently dropped data.
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Open(BaseModel):
    # OpenAI objects grow new keys over time; keep them rather than reject the event.
    model_config = ConfigDict(extra="allow", frozen=True)


class FunctionCall(_Open):
    name: str
    arguments: str = ""


class ToolCall(_Open):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Open):
    """One chat message in OpenAI format. `content` is text or a list of content parts."""

    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _tool_messages_answer_a_call(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a message with role 'tool' needs tool_call_id")
        return self


class ResponseMessage(_Open):
    role: Literal["assistant"] = "assistant"
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None
    finish_reason: str | None = None


class SamplingParams(_Open):
    temperature: float | None = Field(default=None, ge=0, le=5)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=0)
    seed: int | None = None
    stop: str | list[str] | None = None
    response_format: dict[str, Any] | None = None


def _utc(value: datetime) -> datetime:
    # Naive timestamps are taken as UTC: logs from servers almost always are.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class InteractionEvent(_Contract):
    """One LLM call as an application made it: request, response, and what it cost."""

    kind: Literal["interaction"] = "interaction"
    schema_version: Literal["1"] = SCHEMA_VERSION
    request_id: NonEmpty = Field(description="Stable id of the call; the key of everything downstream.")
    timestamp: datetime = Field(description="When the request was sent (ISO 8601; naive means UTC).")
    app_id: NonEmpty = Field(description="The application or workload that made the call.")
    model: NonEmpty
    provider: str | None = Field(default=None, description="openai, anthropic, google, meta, ...")
    messages: list[Message] = Field(min_length=1, description="The request in OpenAI chat format.")
    tools: list[dict[str, Any]] | None = None
    response: ResponseMessage | None = Field(default=None, description="Absent when the call failed.")
    params: SamplingParams | None = None
    latency_ms: float | None = Field(default=None, ge=0)
    tokens_in: int | None = Field(default=None, ge=0)
    tokens_out: int | None = Field(default=None, ge=0)
    cost_usd: float | None = Field(default=None, ge=0)
    status: Literal["ok", "error"] = "ok"
    error: str | None = None
    user_hash: str | None = Field(default=None, description="A hash of the end user's id, never the id.")
    session_hash: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    _utc_timestamp = field_validator("timestamp")(_utc)

    @model_validator(mode="after")
    def _ok_calls_have_a_response(self) -> InteractionEvent:
        if self.status == "ok" and self.response is None:
            raise ValueError("status 'ok' needs a response (use status 'error' for failed calls)")
        return self


FeedbackType = Literal["thumbs", "rating", "correction", "task_success"]
_VALUE_FIELD: dict[str, str] = {
    "thumbs": "thumb",
    "rating": "rating",
    "correction": "correction",
    "task_success": "success",
}


class FeedbackEvent(_Contract):
    """A signal about one interaction, from a user, an annotator or an automatic grader.

    It may arrive before or after the interaction it points to; the link is `request_id`.
    """

    kind: Literal["feedback"] = "feedback"
    schema_version: Literal["1"] = SCHEMA_VERSION
    feedback_id: str | None = Field(
        default=None,
        description="Stable id; derived from request_id, type, source and timestamp when absent.",
    )
    request_id: NonEmpty
    timestamp: datetime
    feedback_type: FeedbackType
    source: NonEmpty = Field(description="user, annotator, grader, heuristic, ...")
    thumb: Literal["up", "down"] | None = None
    rating: float | None = None
    rating_scale: float | None = Field(default=None, gt=0, description="The best possible rating.")
    correction: str | None = None
    success: bool | None = None
    comment: str | None = None
    user_hash: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    _utc_timestamp = field_validator("timestamp")(_utc)

    @model_validator(mode="after")
    def _value_matches_type(self) -> FeedbackEvent:
        needed = _VALUE_FIELD[self.feedback_type]
        if getattr(self, needed) is None:
            raise ValueError(f"feedback_type '{self.feedback_type}' needs field '{needed}'")
        if self.rating is not None and self.rating_scale is not None and not (
            0 <= self.rating <= self.rating_scale
        ):
            raise ValueError(f"rating {self.rating} is outside 0..{self.rating_scale}")
        return self

    @property
    def stable_id(self) -> str:
        if self.feedback_id:
            return self.feedback_id
        key = f"{self.request_id}|{self.feedback_type}|{self.source}|{self.timestamp.isoformat()}"
        return "fb_" + hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


Event = Annotated[InteractionEvent | FeedbackEvent, Field(discriminator="kind")]
EVENT_ADAPTER: TypeAdapter[InteractionEvent | FeedbackEvent] = TypeAdapter(Event)

CONTRACTS: dict[str, type[BaseModel]] = {
    "interaction": InteractionEvent,
    "feedback": FeedbackEvent,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each contract, as written to `schemas/<name>.schema.json`."""
    out = {}
    for name, model in CONTRACTS.items():
        schema = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"flywheel/{name}.schema.json"
        out[name] = schema
    return out
