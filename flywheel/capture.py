"""Capture an application's chat completions as interaction events, without getting in its way.

    from openai import OpenAI
    from flywheel.capture import EventSink, capture

    sink = EventSink(".flywheel/landing/capture")
    client = capture(OpenAI(), sink, app_id="support-bot")
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[...])
    sink.feedback(reply.id, feedback_type="thumbs", thumb="up", source="user")

Every call (sync or async, streamed or not, successful or failed) becomes one interaction event whose
`request_id` is the completion's id. Events go through a bounded queue to a background thread that
appends them to a hidden file and publishes it into the landing folder by renaming it, so the app never
waits on disk and the ingestion sensor never sees a half-written file. If writing fails, the app's call
is unaffected; the sink counts what it could not write.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from flywheel.contracts import FeedbackEvent, validate
from flywheel.pricing import default_price_table, estimate_tokens

log = logging.getLogger("flywheel.capture")
AUTO = "flywheel:auto"  # the model name that asks the router (flywheel.route) to choose
_REQUEST_KEYS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "stop", "response_format")


class EventSink:
    """Appends events to `<folder>/capture-<host>-<pid>-<n>.jsonl`, published every `rotate_s` seconds."""

    def __init__(self, folder: str | os.PathLike[str], *, rotate_s: float = 60.0, max_queue: int = 10_000) -> None:
        self.folder = Path(folder)
        self.rotate_s = rotate_s
        self.dropped = 0
        self.written = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=max_queue)
        self._prefix = f"capture-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._part = 0
        self._thread = threading.Thread(target=self._run, name="flywheel-capture", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def emit(self, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(orjson.dumps({k: v for k, v in event.items() if v is not None}, default=str))
        except Exception:  # a full queue or an unserializable value must never reach the app
            self.dropped += 1

    def feedback(self, request_id: str, **fields: Any) -> None:
        """Record feedback on a captured call; validated now, so that a mistake shows at the call site."""
        fields.setdefault("timestamp", datetime.now(UTC).isoformat())
        event = {"kind": "feedback", "request_id": request_id, **fields}
        if not isinstance(validate(event), FeedbackEvent):
            raise TypeError("feedback() records feedback events only")
        self.emit(event)

    def flush(self, timeout: float = 10.0) -> None:
        """Publish what has been captured so far (tests and short scripts call this)."""
        done = threading.Event()
        self._flushed = done
        self._queue.put(b"__flush__")
        done.wait(timeout)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=10)

    def _run(self) -> None:
        handle, part_path, opened_at = None, None, 0.0
        while True:
            try:
                item = self._queue.get(timeout=max(0.1, self.rotate_s / 4))
            except queue.Empty:
                item = b""
            try:
                if item and item != b"__flush__":
                    if handle is None:
                        self.folder.mkdir(parents=True, exist_ok=True)
                        self._part += 1
                        part_path = self.folder / f".{self._prefix}-{self._part:05d}.jsonl.part"
                        handle, opened_at = part_path.open("ab"), time.monotonic()
                    handle.write(item + b"\n")
                    self.written += 1
                rotate = item is None or item == b"__flush__" or time.monotonic() - opened_at > self.rotate_s
                if handle is not None and rotate:
                    handle.close()
                    part_path.replace(part_path.with_name(part_path.name[1:].removesuffix(".part")))
                    handle = None
            except Exception as error:
                self.dropped += 1
                log.warning("flywheel capture could not write an event: %s", error)
                handle = None
            if item == b"__flush__" and getattr(self, "_flushed", None):
                self._flushed.set()
            if item is None:
                return


def _now() -> datetime:
    return datetime.now(UTC)


class _Call:
    """What one create() call knew, turned into an interaction event when it ends."""

    def __init__(self, sink: EventSink, app_id: str, kwargs: dict[str, Any], extra: dict[str, Any]) -> None:
        self.sink, self.app_id, self.kwargs, self.extra = sink, app_id, kwargs, extra
        self.started_at = _now()
        self.t0 = time.perf_counter()
        self.first_token_ms: float | None = None
        self.content: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.response_id: str | None = None
        self.model: str | None = None
        self.usage: Any = None

    def completed(self, completion: Any) -> None:
        choice = completion.choices[0] if completion.choices else None
        message = choice.message.model_dump(exclude_none=True) if choice else {"role": "assistant"}
        if choice:
            message["finish_reason"] = choice.finish_reason
        self._emit(completion.id, completion.model, message, completion.usage)

    def chunk(self, chunk: Any) -> None:
        if self.first_token_ms is None:
            self.first_token_ms = (time.perf_counter() - self.t0) * 1000
        self.response_id = self.response_id or chunk.id
        self.model = self.model or chunk.model
        if getattr(chunk, "usage", None):
            self.usage = chunk.usage
        for choice in chunk.choices or []:
            delta = choice.delta
            if delta.content:
                self.content.append(delta.content)
            for call in delta.tool_calls or []:
                slot = self.tool_calls.setdefault(call.index, {"id": "", "type": "function",
                                                               "function": {"name": "", "arguments": ""}})
                slot["id"] = call.id or slot["id"]
                if call.function:
                    slot["function"]["name"] += call.function.name or ""
                    slot["function"]["arguments"] += call.function.arguments or ""
            self.finish_reason = choice.finish_reason or self.finish_reason

    def stream_ended(self) -> None:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or None,
                                   "finish_reason": self.finish_reason}
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        self._emit(self.response_id, self.model, message, self.usage)

    @contextmanager
    def failing(self) -> Iterator[None]:
        """Around the request: an error is logged as a failed call, then raised as it was."""
        try:
            yield
        except BaseException as error:
            self.failed(error)
            raise

    def returned(self, result: Any, stream_type: type) -> Any:
        """What create() hands back: a stream that logs the call when it ends, or the completion, logged now."""
        if self.kwargs.get("stream"):
            return stream_type(result, self)
        self.completed(result)
        return result

    def failed(self, error: BaseException) -> None:
        self._emit(None, None, None, None, error=f"{type(error).__name__}: {error}")

    def _emit(self, response_id: str | None, model: str | None, message: dict[str, Any] | None,
              usage: Any, error: str | None = None) -> None:
        try:
            latency = (time.perf_counter() - self.t0) * 1000
            model = model or self.kwargs.get("model") or "unknown"
            messages = list(self.kwargs.get("messages") or [])
            tokens_in = getattr(usage, "prompt_tokens", None)
            tokens_out = getattr(usage, "completion_tokens", None)
            metadata = dict(self.extra.get("metadata") or {})
            if tokens_in is None and message is not None:
                tokens_in, tokens_out = estimate_tokens(messages), estimate_tokens([message])
                metadata["tokens_estimated"] = True
            if self.first_token_ms is not None:
                metadata["time_to_first_token_ms"] = round(self.first_token_ms, 1)
            price = default_price_table().lookup(model)
            self.sink.emit({
                "kind": "interaction",
                "request_id": self.extra.get("request_id") or response_id or f"req_{uuid.uuid4().hex}",
                "timestamp": self.started_at.isoformat(),
                "app_id": self.extra.get("app_id") or self.app_id,
                "model": model,
                "provider": price.provider if price else None,
                "messages": messages,
                "tools": self.kwargs.get("tools"),
                "response": message,
                "params": {k: self.kwargs[k] for k in _REQUEST_KEYS if self.kwargs.get(k) is not None} or None,
                "latency_ms": round(latency, 2),
                "tokens_in": tokens_in,
                "tokens_out": tokens_out,
                "cost_usd": price.cost(tokens_in or 0, tokens_out or 0) if price and message else None,
                "status": "error" if error else "ok",
                "error": error,
                "user_hash": self.extra.get("user_hash"),
                "session_hash": self.extra.get("session_hash"),
                "tags": self.extra.get("tags"),
                "metadata": metadata or None,
            })
        except Exception as failure:  # logging is best effort; the app's call result stands
            self.sink.dropped += 1
            log.warning("flywheel capture could not build an event: %s", failure)


class _SyncStream:
    def __init__(self, stream: Any, call: _Call) -> None:
        self._stream, self._call = stream, call

    def __iter__(self):
        try:
            for chunk in self._stream:
                self._call.chunk(chunk)
                yield chunk
        except BaseException as error:
            self._call.failed(error)
            raise
        self._call.stream_ended()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _AsyncStream(_SyncStream):
    def __iter__(self):  # pragma: no cover - an async stream is not iterable synchronously
        raise TypeError("use 'async for' on an async stream")

    async def __aiter__(self):
        try:
            async for chunk in self._stream:
                self._call.chunk(chunk)
                yield chunk
        except BaseException as error:
            self._call.failed(error)
            raise
        self._call.stream_ended()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stream.close()


def _routed(router: Any, kwargs: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """With model="flywheel:auto", the router picks the model; the interaction records its decision."""
    if kwargs.get("model") != AUTO:
        return extra
    if router is None:
        raise ValueError(f'model="{AUTO}" needs a router: capture(client, sink, router=Router.load())')
    route = router.decide(list(kwargs.get("messages") or []), willingness_to_pay=extra.get("willingness_to_pay"))
    kwargs["model"] = route.model
    return {**extra, "metadata": {**(extra.get("metadata") or {}), "routing": route.as_metadata()}}


def capture(client: Any, sink: EventSink, *, app_id: str = "default", router: Any = None) -> Any:
    """Make `client.chat.completions.create` log every call to `sink`; returns the same client.

    Per call, `flywheel={"request_id": ..., "app_id": ..., "user_hash": ..., "tags": [...],
    "metadata": {...}, "willingness_to_pay": ...}` may be passed to create(); it is taken out before the
    request is sent. With a `router` (flywheel.route.Router), `model="flywheel:auto"` lets it pick the model.
    """
    completions = client.chat.completions
    original = completions.create
    is_async = type(client).__name__.startswith("Async")

    # The two differ only in awaiting the call: what happens around it is _Call's (failing, returned).
    if is_async:
        async def create(*args: Any, **kwargs: Any) -> Any:
            call = _Call(sink, app_id, kwargs, _routed(router, kwargs, kwargs.pop("flywheel", None) or {}))
            with call.failing():
                result = await original(*args, **kwargs)
            return call.returned(result, _AsyncStream)
    else:
        def create(*args: Any, **kwargs: Any) -> Any:
            call = _Call(sink, app_id, kwargs, _routed(router, kwargs, kwargs.pop("flywheel", None) or {}))
            with call.failing():
                result = original(*args, **kwargs)
            return call.returned(result, _SyncStream)

    completions.create = create
    return client
