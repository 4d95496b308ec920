"""A small OpenAI-compatible chat completions server for tests: real HTTP, real SSE streaming."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _answer(body: dict[str, Any]) -> str:
    last = body["messages"][-1].get("content") or ""
    if body.get("model") == "calc-model":  # solves "What is a + b?" and answers in JSON
        numbers = [int(n) for n in re.findall(r"\d+", last)]
        return json.dumps({"reasoning": "added them", "answer": str(sum(numbers))})
    if body.get("model") == "judge-model":
        pair = re.search(r"Answer A:\n(.*)\n\nAnswer B:\n(.*)\n\n", last, re.DOTALL)
        if pair:  # prefers an answer that is not an echo, else the first one shown (a position bias)
            return "B" if pair.group(1).startswith("echo:") and not pair.group(2).startswith("echo:") else "A"
        return "4"
    return f"echo: {last}"[:200]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length))
        self.server.requests.append(body)  # type: ignore[attr-defined]
        if not self.path.endswith("/chat/completions"):
            self._json(404, {"error": {"message": "not found"}})
            return
        if body.get("model") == "broken-model":
            self._json(500, {"error": {"message": "upstream exploded", "type": "server_error"}})
            return
        fault = self.server.faults.pop(0) if self.server.faults else None  # type: ignore[attr-defined]
        if fault in (429, 500, 503):
            self._json(fault, {"error": {"message": f"injected {fault}", "type": "injected"}})
            return
        if fault == "slow":
            time.sleep(self.server.slow_s)  # type: ignore[attr-defined]
        text = _answer(body)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        usage = {"prompt_tokens": 11, "completion_tokens": len(text.split()), "total_tokens": 11 + len(text.split())}
        if not body.get("stream"):
            self._json(200, {
                "id": completion_id, "object": "chat.completion", "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": usage,
            })
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        words = text.split(" ")
        for i, word in enumerate(words):
            chunk = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": body["model"],
                     "choices": [{"index": 0, "delta": {"content": word + (" " if i < len(words) - 1 else "")},
                                  "finish_reason": "stop" if i == len(words) - 1 else None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        if (body.get("stream_options") or {}).get("include_usage"):
            tail = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": body["model"], "choices": [], "usage": usage}
            self.wfile.write(f"data: {json.dumps(tail)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a timeout test)
            pass


class OpenAICompatibleServer:
    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.requests = []  # type: ignore[attr-defined]
        self.httpd.faults = []  # type: ignore[attr-defined]  # what the next requests get: 429, 500, 503, "slow"
        self.httpd.slow_s = 2.0  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.httpd.requests  # type: ignore[attr-defined]

    def inject(self, *faults: int | str, slow_s: float = 2.0) -> None:
        """The next requests fail with these statuses (or reply after `slow_s` seconds for "slow"), in order."""
        self.httpd.faults.extend(faults)  # type: ignore[attr-defined]
        self.httpd.slow_s = slow_s  # type: ignore[attr-defined]

    def __enter__(self) -> OpenAICompatibleServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
