"""Small builders of valid events, so that each test states only what it changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson


def interaction(request_id: str = "req-1", **changes: Any) -> dict[str, Any]:
    event = {
        "kind": "interaction",
        "request_id": request_id,
        "timestamp": "2026-11-20T10:00:00Z",
        "app_id": "support-bot",
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Reset password?"}],
        "response": {"role": "assistant", "content": "Go to settings.", "finish_reason": "stop"},
        "latency_ms": 420.0,
        "tokens_in": 20,
        "tokens_out": 5,
    }
    event.update(changes)
    return event


def feedback(request_id: str = "req-1", **changes: Any) -> dict[str, Any]:
    event = {
        "kind": "feedback",
        "request_id": request_id,
        "timestamp": "2026-11-20T10:05:00Z",
        "feedback_type": "thumbs",
        "source": "user",
        "thumb": "up",
    }
    event.update(changes)
    return event


def write_lines(path: Path, lines: list[dict[str, Any] | bytes | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        for line in lines:
            if isinstance(line, dict):
                line = orjson.dumps(line)
            elif isinstance(line, str):
                line = line.encode()
            handle.write(line + b"\n")
    return path
