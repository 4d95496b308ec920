"""The data contracts: an interaction event and a feedback event.

These msgspec Structs are the single source of the contracts. msgspec decodes and validates a JSON line
in one pass, several times faster than the alternatives, which is what lets ingestion keep pace with
DuckDB's own JSON reader. The JSON Schemas in `schemas/` are generated from these Structs
(`flywheel schemas --write`) and a test keeps the two in step.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

SCHEMA_VERSION = "1"


def _bounds() -> dict[str, Any]:
    import yaml

    from flywheel.settings import SCHEMAS_DIR

    path = SCHEMAS_DIR / "plausibility.yaml"
    bounds = yaml.safe_load(path.read_text(encoding="utf-8"))
    known = {"latency_ms_max", "tokens_in_max", "tokens_out_max", "cost_usd_max", "timestamp_min",
             "future_skew_minutes"}
    if not isinstance(bounds, dict) or set(bounds) != known:
        raise ValueError(f"{path}: expected exactly the keys {sorted(known)}")
    return bounds


BOUNDS = _bounds()
TIMESTAMP_MIN = datetime.fromisoformat(BOUNDS["timestamp_min"].replace("Z", "+00:00"))
FUTURE_SKEW = timedelta(minutes=BOUNDS["future_skew_minutes"])

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
Id = Annotated[str, Meta(min_length=1, max_length=512)]
NonNegativeInt = Annotated[int, Meta(ge=0)]
Latency = Annotated[float, Meta(ge=0, le=BOUNDS["latency_ms_max"])]
TokensIn = Annotated[int, Meta(ge=0, le=BOUNDS["tokens_in_max"])]
TokensOut = Annotated[int, Meta(ge=0, le=BOUNDS["tokens_out_max"])]
Cost = Annotated[float, Meta(ge=0, le=BOUNDS["cost_usd_max"])]
Content = str | list[dict[str, Any]] | None


def _utc(value: datetime) -> datetime:
    # Naive timestamps are taken as UTC: logs from servers almost always are. msgspec gives UTC ones (Z,
    # +00:00) the UTC singleton: kept as they are, the common case costs no new object per event.
    if value.tzinfo is not UTC:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if value < TIMESTAMP_MIN:
        raise ValueError(f"timestamp {value.isoformat()} is before {BOUNDS['timestamp_min']} "
                         "(timestamp_min in schemas/plausibility.yaml)")
    if value > datetime.now(UTC) + FUTURE_SKEW:
        raise ValueError(f"timestamp {value.isoformat()} is more than {BOUNDS['future_skew_minutes']} minutes "
                         "ahead of this machine's clock (future_skew_minutes in schemas/plausibility.yaml)")
    return value


class FunctionCall(msgspec.Struct, omit_defaults=True):
    name: str
    arguments: str = ""


class ToolCall(msgspec.Struct, omit_defaults=True):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class Message(msgspec.Struct, omit_defaults=True):
    """One chat message in OpenAI format. `content` is text or a list of content parts."""

    role: Role
    content: Content = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None

    def __post_init__(self) -> None:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a message with role 'tool' needs tool_call_id")


class ResponseMessage(msgspec.Struct, omit_defaults=True):
    role: Literal["assistant"] = "assistant"
    content: Content = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None
    finish_reason: str | None = None


class SamplingParams(msgspec.Struct, omit_defaults=True):
    temperature: Annotated[float, Meta(ge=0, le=5)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    max_tokens: NonNegativeInt | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    response_format: dict[str, Any] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    n: int | None = None


class InteractionEvent(msgspec.Struct, tag_field="kind", tag="interaction", forbid_unknown_fields=True,
                       omit_defaults=True):
    """One LLM call as an application made it: request, response, and what it cost."""

    request_id: Annotated[Id, Meta(description="Stable id of the call; the key of everything downstream.")]
    timestamp: Annotated[datetime, Meta(description="When the request was sent (ISO 8601; naive means UTC).")]
    app_id: Annotated[Id, Meta(description="The application or workload that made the call.")]
    model: Id
    messages: Annotated[list[Message], Meta(min_length=1, description="The request in OpenAI chat format.")]
    schema_version: Literal["1"] = SCHEMA_VERSION
    provider: Annotated[str, Meta(description="openai, anthropic, google, meta, ...")] | None = None
    tools: list[dict[str, Any]] | None = None
    response: Annotated[ResponseMessage, Meta(description="Absent when the call failed.")] | None = None
    params: SamplingParams | None = None
    latency_ms: Latency | None = None
    tokens_in: TokensIn | None = None
    tokens_out: TokensOut | None = None
    cost_usd: Cost | None = None
    status: Literal["ok", "error"] = "ok"
    error: str | None = None
    user_hash: Annotated[str, Meta(description="A hash of the end user's id, never the id.")] | None = None
    session_hash: str | None = None
    tags: list[str] = []
    metadata: dict[str, Any] = {}

    def __post_init__(self) -> None:
        self.timestamp = _utc(self.timestamp)
        if self.status == "ok" and self.response is None:
            raise ValueError("status 'ok' needs a response (use status 'error' for failed calls)")


FeedbackType = Literal["thumbs", "rating", "correction", "task_success"]
_VALUE_FIELD: dict[str, str] = {
    "thumbs": "thumb",
    "rating": "rating",
    "correction": "correction",
    "task_success": "success",
}


class FeedbackEvent(msgspec.Struct, tag_field="kind", tag="feedback", forbid_unknown_fields=True,
                    omit_defaults=True):
    """A signal about one interaction, from a user, an annotator or an automatic grader.

    It may arrive before or after the interaction it points to; the link is `request_id`.
    """

    request_id: Id
    timestamp: datetime
    feedback_type: FeedbackType
    source: Annotated[Id, Meta(description="user, annotator, grader, heuristic, ...")]
    schema_version: Literal["1"] = SCHEMA_VERSION
    feedback_id: Annotated[
        str, Meta(description="Stable id; derived from request_id, type, source and timestamp when absent.")
    ] | None = None
    thumb: Literal["up", "down"] | None = None
    rating: float | None = None
    rating_scale: Annotated[float, Meta(gt=0, description="The best possible rating.")] | None = None
    correction: str | None = None
    success: bool | None = None
    comment: str | None = None
    user_hash: str | None = None
    metadata: dict[str, Any] = {}

    def __post_init__(self) -> None:
        self.timestamp = _utc(self.timestamp)
        needed = _VALUE_FIELD[self.feedback_type]
        if getattr(self, needed) is None:
            raise ValueError(f"feedback_type '{self.feedback_type}' needs field '{needed}'")
        if self.rating is not None and self.rating_scale is not None and not 0 <= self.rating <= self.rating_scale:
            raise ValueError(f"rating {self.rating} is outside 0..{self.rating_scale}")

    @property
    def stable_id(self) -> str:
        if self.feedback_id:
            return self.feedback_id
        key = f"{self.request_id}|{self.feedback_type}|{self.source}|{self.timestamp.isoformat()}"
        return "fb_" + hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


Event = InteractionEvent | FeedbackEvent
EVENT_DECODER = msgspec.json.Decoder(Event)
CONTRACTS: dict[str, type[msgspec.Struct]] = {"interaction": InteractionEvent, "feedback": FeedbackEvent}
ValidationError = msgspec.ValidationError


def field_names(kind: str) -> set[str]:
    return {f.encode_name for f in msgspec.structs.fields(CONTRACTS[kind])} | {"kind"}


def validate(record: dict[str, Any]) -> InteractionEvent | FeedbackEvent:
    """Validate a Python dict (as an adapter or mapping produced it) against the contract."""
    return msgspec.convert(record, Event)


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each contract, as written to `schemas/<name>.schema.json`."""
    out = {}
    for name, model in CONTRACTS.items():
        schema = msgspec.json.schema(model)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"flywheel/{name}.schema.json"
        out[name] = schema
    return out
