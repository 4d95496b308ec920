"""Turning one source record into contract events, for each input format flywheel accepts.

- `native`: flywheel's own events, one JSON object per line with `kind` = interaction | feedback.
- `openai`: what an app or proxy logs around a chat completion: `{"request": <create() body>,
  "response": <ChatCompletion>, ...}`, plus optional request_id, timestamp, app_id, latency_ms, metadata.
- a field mapping (YAML) for any other export.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from flywheel.ingest.mapping import FieldMapping

Adapter = Callable[[dict[str, Any]], list[dict[str, Any]]]

# Columnar sources (Parquet) often hold nested parts as JSON text.
_NESTED_FIELDS = ("messages", "tools", "response", "params", "metadata")


def native(record: dict[str, Any]) -> list[dict[str, Any]]:
    for name in _NESTED_FIELDS:
        value = record.get(name)
        if isinstance(value, str) and value[:1] in ("{", "["):
            record[name] = orjson.loads(value)
    return [record]


_SAMPLING_KEYS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "stop",
                  "response_format", "presence_penalty", "frequency_penalty", "n")
_PAIR_KEYS = ("request_id", "timestamp", "app_id", "latency_ms", "metadata", "tags", "user_hash",
              "session_hash", "provider", "cost_usd")


def openai_pair(record: dict[str, Any]) -> list[dict[str, Any]]:
    request = record.get("request")
    response = record.get("response")
    if not isinstance(request, dict):
        raise ValueError("an OpenAI pair needs a 'request' object (the chat.completions.create body)")
    event: dict[str, Any] = {key: record[key] for key in _PAIR_KEYS if record.get(key) is not None}
    event["kind"] = "interaction"
    event["messages"] = request.get("messages")
    event["model"] = request.get("model")
    if request.get("tools"):
        event["tools"] = request["tools"]
    params = {key: request[key] for key in _SAMPLING_KEYS if request.get(key) is not None}
    if "max_completion_tokens" in params:
        params.setdefault("max_tokens", params.pop("max_completion_tokens"))
    if params:
        event["params"] = params
    if isinstance(response, dict) and response.get("choices"):
        choice = response["choices"][0]
        event["response"] = {**choice.get("message", {}), "finish_reason": choice.get("finish_reason")}
        usage = response.get("usage") or {}
        event.setdefault("tokens_in", usage.get("prompt_tokens"))
        event.setdefault("tokens_out", usage.get("completion_tokens"))
        # The served model (a dated snapshot) is what was actually billed and answered.
        event["model"] = response.get("model") or event["model"]
        if "timestamp" not in event and response.get("created"):
            event["timestamp"] = datetime.fromtimestamp(response["created"], UTC).isoformat()
        event.setdefault("request_id", response.get("id"))
    else:
        event["status"] = "error"
        event["error"] = str(record.get("error") or "no response recorded")
    if "request_id" not in event:
        # A stable id from the content, so that re-ingesting the same pair stays idempotent.
        digest = hashlib.blake2b(orjson.dumps(record, option=orjson.OPT_SORT_KEYS), digest_size=16)
        event["request_id"] = "pair_" + digest.hexdigest()
    event.setdefault("app_id", "default")
    return [{k: v for k, v in event.items() if v is not None}]


def looks_like_openai_pair(record: dict[str, Any]) -> bool:
    return isinstance(record.get("request"), dict) and "messages" in record["request"]


def adapter_for(format_name: str, mapping: FieldMapping | None = None) -> Adapter:
    if mapping is not None:
        return mapping.apply
    if format_name == "openai":
        return openai_pair
    if format_name == "native":
        return native
    raise ValueError(f"unknown input format {format_name!r} (native, openai, or a mapping file)")
