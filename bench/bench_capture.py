"""Overhead of flywheel.capture on an application's chat completion calls.

    uv run python bench/bench_capture.py --calls 500

Baseline: the plain openai client against a local OpenAI-compatible HTTP server, measured in the same run.
Ours: the same client wrapped by `capture`, writing every call to a landing folder. Prints the mean time
per call of each, the difference, and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import openai

    from flywheel.capture import EventSink, capture
    from tests.support.openai_server import OpenAICompatibleServer

    with OpenAICompatibleServer() as server, tempfile.TemporaryDirectory() as tmp:
        plain = openai.OpenAI(base_url=server.base_url, api_key="bench", max_retries=0)
        sink = EventSink(Path(tmp) / "capture")
        wrapped = capture(openai.OpenAI(base_url=server.base_url, api_key="bench", max_retries=0), sink)
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "ping " * 50}]

        def per_call_ms(client) -> float:
            started = time.perf_counter()
            for _ in range(args.calls):
                client.chat.completions.create(model="gpt-4o-mini", messages=messages)
            return (time.perf_counter() - started) / args.calls * 1000

        per_call_ms(plain), per_call_ms(wrapped)  # warm both connections
        rounds = [(per_call_ms(plain), per_call_ms(wrapped)) for _ in range(args.rounds)]
        sink.close()
        base = statistics.median(r[0] for r in rounds)
        ours = statistics.median(r[1] for r in rounds)
        print(f"plain openai client : {base:.3f} ms/call (median of {args.rounds} rounds of {args.calls})")
        print(f"with flywheel capture: {ours:.3f} ms/call")
        print(f"overhead: {ours - base:+.3f} ms/call, ratio {ours / base:.3f}; events written {sink.written:,}, "
              f"dropped {sink.dropped}")


if __name__ == "__main__":
    main()
