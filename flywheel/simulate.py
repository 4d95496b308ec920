"""Realistic multi-model production traffic, for the demo job, tests and load benchmarks.

Several apps send prompts (some repeated exactly, some near-repeated) to models at different price and
quality points; latency and token counts follow long-tailed distributions; users leave feedback minutes
to hours later (a few feedback events even arrive before their interaction); and a small share of lines
is malformed, as in any real log.
"""

from __future__ import annotations

import gzip
import heapq
import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from flywheel.pricing import PriceTable, default_price_table, estimate_tokens


@dataclass(frozen=True)
class SimModel:
    name: str
    quality: float  # chance of a good answer to an average prompt
    latency_ms: float  # median
    out_tokens_per_s: float


MODELS = (
    SimModel("gpt-4o", 0.93, 900, 80),
    SimModel("gpt-4o-mini", 0.84, 550, 110),
    SimModel("claude-3.5-sonnet", 0.94, 1100, 70),
    SimModel("claude-3.5-haiku", 0.82, 600, 120),
    SimModel("gemini-1.5-flash", 0.78, 450, 150),
    SimModel("llama-3.1-8b", 0.62, 300, 200),
)


@dataclass(frozen=True)
class SimApp:
    app_id: str
    system: str
    templates: tuple[str, ...]
    slots: dict[str, tuple[str, ...]]
    feedback: str  # thumbs | rating | task_success | correction
    weight: float
    uses_tools: bool = False


_PRODUCTS = ("Pro plan", "Team plan", "mobile app", "desktop client", "API", "billing page", "SSO login")
_ISSUES = ("can't log in", "was charged twice", "lost my data", "see an error 500", "can't export to CSV",
           "forgot my password", "want a refund", "get a timeout")
APPS = (
    SimApp(
        "support-bot",
        "You are a friendly support agent for Acme Cloud. Answer briefly and link to docs when useful.",
        ("Hi, I {issue} on the {product}. What should I do?",
         "Hello! Since yesterday I {issue} with the {product}, please help",
         "I {issue}. I'm on the {product}. Is this a known problem?",
         # users paste personal data: redaction has to catch it before anything leaves the warehouse
         "I {issue} on the {product}. Reach me at {contact}."),
        {"issue": _ISSUES, "product": _PRODUCTS,
         "contact": ("jane.doe@example.com", "+1 415 555 0142", "m.rossi@example.org", "(212) 555-0199")},
        "thumbs", 0.35,
    ),
    SimApp(
        "sql-assistant",
        "Translate the question into one DuckDB SQL query over the tables orders(id, customer_id, amount, "
        "created_at) and customers(id, name, country). Return SQL only.",
        ("How many orders were placed in {month}?",
         "Total order amount per country in {month}, largest first",
         "Which {n} customers spent the most in {month}?",
         "Average order value for customers from {country}"),
        {"month": ("January", "February", "March", "April", "May", "June"), "n": ("3", "5", "10"),
         "country": ("France", "Brazil", "Japan", "Canada", "Kenya")},
        "task_success", 0.25, uses_tools=True,
    ),
    SimApp(
        "summarizer",
        "Summarize the customer conversation in three bullet points.",
        ("Summarize: customer says the {product} {issue2} and asks for {ask}. Agent offered {offer}.",
         "Please summarize this ticket. The {product} {issue2}; the customer wants {ask}; we offered {offer}."),
        {"product": _PRODUCTS, "issue2": ("crashes on start", "is slow", "shows wrong totals", "logs out often"),
         "ask": ("a refund", "a call back", "a discount", "an engineer"),
         "offer": ("a credit", "a workaround", "escalation", "nothing yet")},
        "rating", 0.2,
    ),
    SimApp(
        "email-writer",
        "Draft a short, polite business email.",
        ("Write an email to {who} about {topic}.", "Draft a reply to {who} explaining {topic}."),
        {"who": ("a customer", "our supplier", "the finance team", "a new hire"),
         "topic": ("a delayed shipment", "the new pricing", "an outage last night", "the onboarding schedule")},
        "correction", 0.2,
    ),
)

_GOOD = {
    "support-bot": "Sorry about that! Please try signing out and back in, then clear the cache. If it persists, "
                   "see https://docs.acme.example/help or reply here and we'll escalate.",
    "sql-assistant": "SELECT c.country, sum(o.amount) AS total FROM orders o JOIN customers c ON c.id = "
                     "o.customer_id GROUP BY 1 ORDER BY 2 DESC;",
    "summarizer": "- The customer reports a problem with the product.\n- They ask for a remedy.\n"
                  "- The agent offered a next step.",
    "email-writer": "Dear team,\n\nI'm writing about the matter below. Thank you for your patience; we'll "
                    "follow up with details shortly.\n\nBest regards,\nAlex",
}
_BAD = ("I'm not sure.", "As an AI model I cannot help with that.", "SELEC * FORM orders",
        "Here is a summary: the the the", "")


def _weighted_app(rng: random.Random) -> SimApp:
    return rng.choices(APPS, weights=[a.weight for a in APPS])[0]


def _prompt(rng: random.Random, app: SimApp) -> str:
    text = rng.choice(app.templates).format(**{k: rng.choice(v) for k, v in app.slots.items()})
    if rng.random() < 0.15:  # near-repeats: typos, casing, trailing noise
        words = text.split()
        i = rng.randrange(len(words))
        words[i] = words[i].lower() if rng.random() < 0.5 else words[i] + words[i][-1]
        text = " ".join(words) + rng.choice(("", " thanks", " pls", "!!"))
    return text


def _malformed(rng: random.Random, event: dict[str, Any]) -> bytes:
    kind = rng.randrange(6)
    line = orjson.dumps(event)
    if kind == 0:
        return line[: len(line) // 2]  # truncated write
    if kind == 1:
        return orjson.dumps({**event, "latency_ms": "fast"})  # wrong type
    if kind == 2:
        return orjson.dumps({k: v for k, v in event.items() if k != "model"})  # missing field
    if kind == 3:
        bad = {**event, "messages": [{"role": "robot", "content": "hi"}]}
        return orjson.dumps(bad)  # invalid role
    if kind == 4:
        return line.replace(b'"app_id"', b'"app_id\xff"', 1)  # not UTF-8
    return b"not json at all"


def simulate(
    out: Path,
    rows: int,
    *,
    days: int = 7,
    seed: int = 7,
    malformed_rate: float = 0.005,
    feedback_rate: float = 0.3,
    end: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Write `rows` interactions (plus feedback and malformed lines) to `out`; return counts."""
    rng = random.Random(seed)
    prices = default_price_table()
    end = end or datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=days)
    step = (end - start) / max(rows, 1)
    users = [f"u_{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}" for _ in range(max(50, rows // 40))]
    recent_prompts: list[tuple[SimApp, str]] = []
    pending: list[tuple[datetime, int, bytes]] = []  # feedback waiting for its arrival time
    counts = {"interactions": 0, "feedback": 0, "malformed": 0, "feedback_early": 0}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name("." + out.name + ".part")  # the sensor ignores dot-files until the rename
    opener = gzip.open if out.name.endswith(".gz") else open
    with opener(tmp, "wb") as handle:
        for i in range(rows):
            ts = start + step * i + timedelta(seconds=rng.random())
            while pending and pending[0][0] <= ts:
                handle.write(heapq.heappop(pending)[2] + b"\n")
            if recent_prompts and rng.random() < 0.12:  # exact repeats of a recent prompt
                app, text = rng.choice(recent_prompts)
            else:
                app = _weighted_app(rng)
                text = _prompt(rng, app)
                recent_prompts.append((app, text))
                if len(recent_prompts) > 500:
                    recent_prompts.pop(rng.randrange(len(recent_prompts)))
            event, good, failed = _interaction(rng, i, ts, app, text, users, prices)
            if rng.random() < malformed_rate:
                handle.write(_malformed(rng, event) + b"\n")
                counts["malformed"] += 1
                continue
            line = orjson.dumps({k: v for k, v in event.items() if v is not None})
            if not failed and rng.random() < feedback_rate:
                fb = _feedback(rng, app, event, good, ts, end)
                if rng.random() < 0.03:  # clock skew / a separate pipeline: feedback before its interaction
                    handle.write(fb[1] + b"\n")
                    counts["feedback_early"] += 1
                else:
                    heapq.heappush(pending, (*fb[:1], i, fb[1]))
                counts["feedback"] += 1
            handle.write(line + b"\n")
            counts["interactions"] += 1
            if progress and (i + 1) % 10_000 == 0:
                progress(10_000)
        while pending:
            handle.write(heapq.heappop(pending)[2] + b"\n")
    tmp.replace(out)
    if progress:
        progress(rows % 10_000)
    return counts


def _interaction(rng: random.Random, i: int, ts: datetime, app: SimApp, text: str, users: list[str],
                 prices: PriceTable) -> tuple[dict[str, Any], bool, bool]:
    """One interaction event of `app` answering `text` at `ts`: the event, whether its answer is good, whether
    the call failed. The draws from `rng` come in a fixed order: a seed always gives the same traffic."""
    model = rng.choice(MODELS)
    difficulty = rng.uniform(-0.15, 0.1)
    good = rng.random() < model.quality + difficulty
    answer = _GOOD[app.app_id] if good else rng.choice(_BAD)
    messages = [{"role": "system", "content": app.system}, {"role": "user", "content": text}]
    tokens_in = estimate_tokens(messages) + rng.randint(0, 8)
    tokens_out = max(1, estimate_tokens(answer) + rng.randint(0, 30))
    latency = model.latency_ms * math.exp(rng.gauss(0, 0.45)) + 1000 * tokens_out / model.out_tokens_per_s
    failed = rng.random() < 0.01
    price = prices.lookup(model.name)
    event: dict[str, Any] = {
        "kind": "interaction",
        "request_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "timestamp": ts.isoformat(),
        "app_id": app.app_id,
        "model": model.name,
        "provider": price.provider if price else None,
        "messages": messages,
        "params": {"temperature": rng.choice((0.0, 0.2, 0.7)), "max_tokens": 512},
        "latency_ms": round(latency, 1),
        "status": "error" if failed else "ok",
        # one of the first k users (a few users make most calls), drawn as rng.choice(users[:k]) would draw it,
        # without copying the list for every call: that made 10M rows quadratic
        "user_hash": users[rng.randrange(max(1, int(len(users) * rng.random() ** 2)))],
        "session_hash": f"s_{rng.getrandbits(40):010x}",
        "tags": ["sim"],
        "metadata": {"difficulty": round(difficulty, 3)},
    }
    if failed:
        event["error"] = rng.choice(("rate_limit_exceeded", "timeout", "server_error"))
    else:
        event["response"] = {"role": "assistant", "content": answer, "finish_reason": "stop"}
        if app.uses_tools and good and rng.random() < 0.3:
            event["response"]["tool_calls"] = [{"id": f"call_{i}", "type": "function",
                "function": {"name": "run_sql", "arguments": orjson.dumps({"sql": answer}).decode()}}]
        if rng.random() < 0.9:  # some loggers record no usage; some record no cost
            event["tokens_in"], event["tokens_out"] = tokens_in, tokens_out
            if price and rng.random() < 0.8:
                event["cost_usd"] = round(price.cost(tokens_in, tokens_out), 8)
    return event, good, failed


def _feedback(rng: random.Random, app: SimApp, event: dict[str, Any], good: bool, ts: datetime, end: datetime
              ) -> tuple[datetime, bytes]:
    # Feedback comes later, but not after the traffic's end ("now", by default): logs hold no future events.
    arrival = min(ts + timedelta(seconds=rng.expovariate(1 / 1800)), max(ts, end))
    feedback: dict[str, Any] = {
        "kind": "feedback", "request_id": event["request_id"], "timestamp": arrival.isoformat(),
        "feedback_type": app.feedback, "source": "grader" if app.feedback == "task_success" else "user",
        "user_hash": event["user_hash"],
    }
    noisy_good = good if rng.random() > 0.1 else not good  # users are not perfect judges
    if app.feedback == "thumbs":
        feedback["thumb"] = "up" if noisy_good else "down"
    elif app.feedback == "rating":
        feedback["rating"] = rng.choice((4, 5)) if noisy_good else rng.choice((1, 2, 3))
        feedback["rating_scale"] = 5
    elif app.feedback == "task_success":
        feedback["success"] = good
    elif noisy_good:  # nothing to correct: a user who bothers says so with a thumb
        feedback["feedback_type"], feedback["thumb"] = "thumbs", "up"
    else:
        feedback["correction"] = _GOOD[app.app_id]
    return arrival, orjson.dumps(feedback)
