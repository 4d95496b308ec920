"""Capturing an app's chat completions with the real openai client against a real local HTTP server."""

from __future__ import annotations

import asyncio
import os
import time

import openai
import orjson
import pytest

from flywheel.capture import EventSink, capture
from flywheel.ingest import ingest_file


def captured_events(folder) -> list[dict]:
    events = []
    for path in sorted(folder.glob("capture-*.jsonl")):
        events += [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return events


@pytest.fixture
def sink(tmp_path):
    sink = EventSink(tmp_path / "landing" / "capture", rotate_s=3600)
    yield sink
    sink.close()


def test_sync_calls_are_captured_with_latency_tokens_and_cost(openai_server, sink, con):
    client = capture(openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0), sink,
                     app_id="support-bot")
    reply = client.chat.completions.create(model="gpt-4o-mini", temperature=0.2,
                                           messages=[{"role": "user", "content": "hello there"}],
                                           flywheel={"user_hash": "u1", "tags": ["beta"]})
    assert reply.choices[0].message.content == "echo: hello there"
    assert "flywheel" not in openai_server.requests[-1]  # our options never reach the provider
    sink.feedback(reply.id, feedback_type="thumbs", thumb="up", source="user")
    sink.flush()
    interaction, feedback = captured_events(sink.folder)
    assert interaction["request_id"] == reply.id == feedback["request_id"]
    assert (interaction["app_id"], interaction["model"], interaction["provider"]) == ("support-bot", "gpt-4o-mini",
                                                                                    "openai")
    assert (interaction["tokens_in"], interaction["tokens_out"]) == (11, 3)
    assert interaction["cost_usd"] == pytest.approx((11 * 0.15 + 3 * 0.60) / 1e6)
    assert interaction["latency_ms"] > 0 and interaction["params"] == {"temperature": 0.2}
    assert (interaction["user_hash"], interaction["tags"]) == ("u1", ["beta"])
    # and what was captured goes through the ordinary ingestion path
    for path in sink.folder.glob("capture-*.jsonl"):
        assert ingest_file(con, path).lines_ingested == 2


def test_streamed_calls_are_captured_when_the_stream_ends(openai_server, sink):
    client = capture(openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0), sink)
    stream = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "count to three"}],
                                            stream=True, stream_options={"include_usage": True})
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    sink.flush()
    (event,) = captured_events(sink.folder)
    assert text == event["response"]["content"] == "echo: count to three"
    assert event["response"]["finish_reason"] == "stop"
    assert event["tokens_out"] == 4 and "time_to_first_token_ms" in event["metadata"]


def test_streams_without_usage_get_estimated_tokens(openai_server, sink):
    client = capture(openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0), sink)
    for _ in client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                            stream=True):
        pass
    sink.flush()
    (event,) = captured_events(sink.folder)
    assert event["metadata"]["tokens_estimated"] is True and event["tokens_in"] > 0


def test_async_calls_and_async_streams_are_captured(openai_server, sink):
    client = capture(openai.AsyncOpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0), sink,
                     app_id="async-app")

    async def main() -> str:
        reply = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a"}])
        stream = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "b c"}],
                                                      stream=True)
        async for _ in stream:
            pass
        return reply.id

    first_id = asyncio.run(main())
    sink.flush()
    events = captured_events(sink.folder)
    assert [e["response"]["content"] for e in events] == ["echo: a", "echo: b c"]
    assert events[0]["request_id"] == first_id and {e["app_id"] for e in events} == {"async-app"}


def test_failed_calls_are_captured_as_errors_and_still_raise(openai_server, sink):
    client = capture(openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0), sink)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="broken-model", messages=[{"role": "user", "content": "x"}])
    sink.flush()
    (event,) = captured_events(sink.folder)
    assert event["status"] == "error" and "upstream exploded" in event["error"]
    assert "response" not in event and event["request_id"].startswith("req_")


def test_a_sink_that_cannot_write_never_breaks_the_call(openai_server, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the folder should be")
    sink = EventSink(blocked / "capture", rotate_s=3600)
    client = capture(openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0), sink)
    reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "still works"}])
    sink.flush()
    sink.close()
    assert reply.choices[0].message.content == "echo: still works"
    assert sink.dropped == 1 and sink.written == 0


def test_published_files_appear_only_when_complete(openai_server, tmp_path):
    sink = EventSink(tmp_path / "capture", rotate_s=3600)
    client = capture(openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0), sink)
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    time.sleep(0.3)
    names = os.listdir(sink.folder)
    assert names and all(n.startswith(".") and n.endswith(".part") for n in names)  # the sensor skips these
    sink.close()
    assert [n for n in os.listdir(sink.folder) if not n.startswith(".")] != []
