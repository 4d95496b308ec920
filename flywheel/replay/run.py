"""Running a replay: which prompts, the calls (capped, concurrent, retried, cached) and the events they make.

Every answer becomes an interaction event (model = the candidate's name, tags ["replay"], metadata.source =
"replay", metadata.replay_of = the logged request) and its grade a feedback event: task_success from
"replay-check:<check>" (an outcome) or a rating from "replay-judge" (a judge signal). A call that fails after
its retries is an interaction with status "error": failed, never a wrong answer. Events are written to one
file in the landing folder and ingested like any other log.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson

from flywheel.pricing import estimate_tokens
from flywheel.replay.grading import (
    check,
    judge_messages,
    judge_score,
    pairwise_choice,
    pairwise_messages,
    pairwise_rating,
)
from flywheel.replay.settings import Endpoint, Judge, ReplaySettings
from flywheel.settings import Home, private_folder

_NAMESPACE = uuid.UUID("6c1c4f7e-8f5e-4a55-9d1e-0b7a4f3c2a10")


@dataclass(frozen=True)
class Task:
    request_id: str          # the logged request whose prompt is replayed
    cluster_id: str
    app_id: str
    messages: list[dict[str, Any]]
    reference: str | None
    response_format: dict[str, Any] | None
    missing: tuple[str, ...]  # candidates with no answer in this cluster yet
    logged_answer: str | None = None  # what the logged model answered: a pairwise judge's other side


def select_tasks(con: duckdb.DuckDBPyConnection, settings: ReplaySettings, prompts: int | None = None) -> list[Task]:
    """Up to `prompts` clusters lacking an answer from some candidate, spread over apps in proportion to their
    clusters (each app gets at least one while the budget lasts); a stable hash order within an app."""
    names = [c.name for c in settings.candidates]
    rows = con.execute("""
        WITH answered AS (
            SELECT cluster_id, list(DISTINCT model) AS models FROM marts.router_examples GROUP BY cluster_id
        ),
        clusters AS (
            SELECT DISTINCT cluster_id, app_id, prompt_request_id FROM marts.router_examples
        ),
        reference AS (
            SELECT cluster_id,
                   arg_max(response_text, (corrected, quality_score, request_id)) AS answer
            FROM marts.curated_interactions
            WHERE corrected OR (quality_source IN ('human', 'outcome') AND quality_score >= getvariable('quality_bar'))
            GROUP BY cluster_id
        )
        SELECT c.cluster_id, c.app_id, c.prompt_request_id, a.models, i.messages::JSON, any_value(ri.params)::JSON,
               r.answer, count(*) OVER (PARTITION BY c.app_id) AS app_clusters,
               row_number() OVER (PARTITION BY c.app_id ORDER BY md5(c.cluster_id)) AS rank_in_app,
               i.response_text
        FROM clusters c JOIN answered a USING (cluster_id)
        JOIN intermediate.int_interactions i ON i.request_id = c.prompt_request_id
        LEFT JOIN raw.interactions ri ON ri.request_id = c.prompt_request_id  -- its response_format, if any
        LEFT JOIN reference r USING (cluster_id)
        WHERE len(list_filter(?::VARCHAR[], n -> NOT list_contains(a.models, n))) > 0
        GROUP BY c.cluster_id, c.app_id, c.prompt_request_id, a.models, i.messages, r.answer, i.response_text
    """, [names]).fetchall()
    limit = prompts or settings.prompts
    total = len(rows)
    by_app: dict[str, list] = {}
    for row in rows:
        by_app.setdefault(row[1], []).append(row)
    chosen = []
    for _, members in sorted(by_app.items()):
        share = max(1, round(limit * len(members) / max(total, 1)))
        chosen += sorted(members, key=lambda r: r[8])[:share]
    chosen = sorted(chosen, key=lambda r: (r[8] / r[7], r[0]))[:limit]  # the same share of each app first
    tasks = []
    for cluster, app, request, models, messages, params, answer, _, _, logged_answer in chosen:
        params = json.loads(params) if params else {}
        tasks.append(Task(request, cluster, app, json.loads(messages), answer,
                          (params or {}).get("response_format"), tuple(n for n in names if n not in models),
                          logged_answer))
    return tasks


class Cache:
    """Answers already paid for, keyed by (endpoint, model, messages, parameters): a re-run costs nothing."""

    def __init__(self, path: Path) -> None:
        private_folder(path.parent)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL)")
        self._lock = threading.Lock()

    @staticmethod
    def key(endpoint: Endpoint, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
        return hashlib.sha256(orjson.dumps([endpoint.base_url, endpoint.api_model, messages, params],
                                           option=orjson.OPT_SORT_KEYS)).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT answer FROM answers WHERE key = ?", [key]).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, answer: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?)", [key, json.dumps(answer)])
            self._db.commit()

    def close(self) -> None:
        self._db.close()


class Budget:
    """A hard cap: a call goes out only if its worst-case cost fits what is left; its actual cost is settled."""

    def __init__(self, cap_usd: float) -> None:
        self.cap, self.spent, self.reserved = cap_usd, 0.0, 0.0
        self._lock = threading.Lock()

    def reserve(self, estimate: float) -> bool:
        with self._lock:
            if self.spent + self.reserved + estimate > self.cap + 1e-12:
                return False
            self.reserved += estimate
            return True

    def settle(self, estimate: float, actual: float) -> None:
        with self._lock:
            self.reserved -= estimate
            self.spent += actual


@dataclass
class ReplayReport:
    tasks: int = 0
    calls: int = 0
    cached: int = 0
    failed: int = 0
    over_budget: int = 0
    graded: dict[str, int] = field(default_factory=dict)
    spent_usd: float = 0.0
    events_file: Path | None = None


class _Caller:
    def __init__(self, settings: ReplaySettings, cache: Cache, budget: Budget, environ: dict[str, str]) -> None:
        import openai

        self.settings, self.cache, self.budget = settings, cache, budget
        self._clients: dict[str, Any] = {}
        self._openai = openai
        self._environ = environ
        self._lock = threading.Lock()

    def client(self, endpoint: Endpoint) -> Any:
        with self._lock:
            if endpoint.name not in self._clients:
                key = self._environ.get(endpoint.api_key_env, "") if endpoint.api_key_env else ""
                if endpoint.api_key_env and not key:
                    raise ValueError(f"{endpoint.name}: the environment variable {endpoint.api_key_env} that "
                                     "schemas/replay.yaml names for its API key is not set")
                self._clients[endpoint.name] = self._openai.OpenAI(
                    base_url=endpoint.base_url, api_key=key or "not-needed", timeout=self.settings.timeout_s,
                    max_retries=self.settings.max_retries)
            return self._clients[endpoint.name]

    def ask(self, endpoint: Endpoint, messages: list[dict[str, Any]], max_tokens: int) -> dict[str, Any]:
        """{"text", "tokens_in", "tokens_out", "cost_usd", "latency_ms", "cached"} or {"error"} or {"skipped"}."""
        params = {"temperature": self.settings.temperature, "max_tokens": max_tokens}
        key = Cache.key(endpoint, messages, params)
        known = self.cache.get(key)
        if known is not None:
            return {**known, "cached": True, "cost_usd": 0.0, "billed_usd": known["cost_usd"]}
        price = endpoint.pricing()
        estimate = price.cost(estimate_tokens(messages), max_tokens)
        if not self.budget.reserve(estimate):
            return {"skipped": "over budget"}
        started = time.perf_counter()
        actual = 0.0
        try:
            reply = self.client(endpoint).chat.completions.create(model=endpoint.api_model, messages=messages,
                                                                  **params)
            text = reply.choices[0].message.content if reply.choices else None
            tokens_in = getattr(reply.usage, "prompt_tokens", None) or estimate_tokens(messages)
            tokens_out = getattr(reply.usage, "completion_tokens", None) or estimate_tokens(text or "")
            actual = price.cost(tokens_in, tokens_out)
            answer = {"text": text, "tokens_in": tokens_in, "tokens_out": tokens_out, "cost_usd": actual,
                      "latency_ms": round((time.perf_counter() - started) * 1000, 2), "response_id": reply.id}
            self.cache.put(key, answer)
            return {**answer, "cached": False}
        except self._openai.APIError as error:  # after the client's retries: failed, not wrong
            return {"error": f"{type(error).__name__}: {error}"[:500],
                    "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
        finally:
            self.budget.settle(estimate, actual)


def run_replay(con: duckdb.DuckDBPyConnection, settings: ReplaySettings, tasks: list[Task], folder: Path,
               environ: dict[str, str], *, cache_path: Path,
               on_progress: Callable[[int, int, float], None] | None = None) -> ReplayReport:
    """Ask every task's missing candidates, grade the answers and write the events to `folder`."""
    report = ReplayReport(tasks=len(tasks))
    budget = Budget(settings.budget_usd)
    cache = Cache(cache_path)
    caller = _Caller(settings, cache, budget, environ)
    candidates = {c.name: c for c in settings.candidates}
    jobs = [(task, candidates[name]) for task in tasks for name in task.missing]
    events: list[dict[str, Any]] = []
    lock = threading.Lock()
    done = 0

    def one(task: Task, endpoint: Endpoint) -> None:
        nonlocal done
        answer = caller.ask(endpoint, task.messages, settings.max_tokens)
        made = [] if "skipped" in answer else _events(task, endpoint, answer)
        grade = None
        if "text" in answer:
            verdict = check(answer["text"], task.reference, task.response_format)
            if verdict is not None:
                grade = f"check:{verdict.check}"
                made.append(_feedback(made[0]["request_id"], "task_success", f"replay-check:{verdict.check}",
                                      success=verdict.success))
            elif settings.judge is not None:
                grade, verdict_event = _judge(caller, settings.judge, task, answer["text"] or "")
                if verdict_event is not None:
                    made.append({**verdict_event, "request_id": made[0]["request_id"]})
        with lock:
            events.extend(made)
            report.calls += "text" in answer and not answer.get("cached")
            report.cached += bool(answer.get("cached"))
            report.failed += "error" in answer
            report.over_budget += "skipped" in answer
            if grade:
                report.graded[grade] = report.graded.get(grade, 0) + 1
            done += 1
            if on_progress:
                on_progress(done, len(jobs), budget.spent)

    try:
        with ThreadPoolExecutor(settings.concurrency) as pool:
            for future in [pool.submit(one, task, endpoint) for task, endpoint in jobs]:
                future.result()
    finally:
        cache.close()
    report.spent_usd = budget.spent
    if events:
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        target = folder / f"replay-{stamp}-{uuid.uuid4().hex[:6]}.jsonl"
        part = target.with_name(f".{target.name}.part")
        events.sort(key=lambda e: (e["kind"] != "interaction", e["request_id"]))
        part.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
        part.replace(target)  # the landing sensor never sees half a file
        report.events_file = target
    return report


def _judge(caller: _Caller, judge: Judge, task: Task, answer: str) -> tuple[str | None, dict[str, Any] | None]:
    """The judge's verdict as a feedback event (its request_id set by the caller), or None when unreadable."""
    if judge.mode == "pairwise" and task.logged_answer:
        choices = [pairwise_choice(caller.ask(judge, pairwise_messages(judge.instructions, task.messages, first,
                                                                       second), 8).get("text"))
                   for first, second in ((answer, task.logged_answer), (task.logged_answer, answer))]
        rating = pairwise_rating(*choices)
        if rating is None:
            return None, None
        return "judge:pairwise", _feedback("", "rating", "replay-judge:pairwise", rating=float(rating),
                                           rating_scale=3.0, metadata={"against": task.request_id,
                                                                       "verdicts": choices})
    score = judge_score(caller.ask(judge, judge_messages(judge.instructions, task.messages, answer), 8).get("text"))
    if score is None:
        return None, None
    return "judge", _feedback("", "rating", "replay-judge", rating=float(score), rating_scale=5.0)


def _events(task: Task, endpoint: Endpoint, answer: dict[str, Any]) -> list[dict[str, Any]]:
    request_id = "replay-" + str(uuid.uuid5(_NAMESPACE, f"{task.request_id}|{endpoint.name}|{endpoint.base_url}"))
    failed = "error" in answer
    return [{k: v for k, v in {
        "kind": "interaction", "request_id": request_id, "timestamp": datetime.now(UTC).isoformat(),
        "app_id": task.app_id, "model": endpoint.name, "messages": task.messages,
        "response": None if failed else {"role": "assistant", "content": answer["text"]},
        "latency_ms": answer.get("latency_ms"), "tokens_in": answer.get("tokens_in"),
        "tokens_out": answer.get("tokens_out"),
        "cost_usd": None if failed else answer.get("billed_usd", answer.get("cost_usd")),
        "status": "error" if failed else "ok", "error": answer.get("error"), "tags": ["replay"],
        "metadata": {"source": "replay", "replay_of": task.request_id, "endpoint": endpoint.base_url,
                     "cached": bool(answer.get("cached"))},
    }.items() if v is not None}]


def _feedback(request_id: str, feedback_type: str, source: str, **value: Any) -> dict[str, Any]:
    return {"kind": "feedback", "request_id": request_id, "timestamp": datetime.now(UTC).isoformat(),
            "feedback_type": feedback_type, "source": source, **value}


class NothingToReplay(Exception):
    """No marts yet: the replay reads the logged prompts and their answers from marts.router_examples."""


@dataclass(frozen=True)
class ReplayPlan:
    settings: ReplaySettings  # candidates renamed to their logged names
    tasks: list[Task]
    renamed: dict[str, str]  # candidate name in the settings -> the logged model it is
    calls: int
    worst_case_usd: float


def plan_replay(con: duckdb.DuckDBPyConnection, settings: ReplaySettings, prompts: int | None = None) -> ReplayPlan:
    """What a replay would ask, before anything is paid: the prompts, the missing answers, the worst-case cost."""
    from flywheel.curation import load_rules, set_rule_variables
    from flywheel.replay.settings import as_logged

    if not con.execute("""SELECT count(*) FROM duckdb_tables()
                          WHERE schema_name = 'marts' AND table_name = 'router_examples'""").fetchall()[0][0]:
        raise NothingToReplay("nothing to replay yet: run `flywheel publish` (it builds the marts) first")
    set_rule_variables(con, load_rules())
    logged = [m for (m,) in con.execute("SELECT DISTINCT model FROM marts.router_examples").fetchall()]
    settings, renamed = as_logged(settings, logged)
    tasks = select_tasks(con, settings, prompts)
    by_name = {c.name: c for c in settings.candidates}
    worst = sum(by_name[n].pricing().cost(estimate_tokens(t.messages), settings.max_tokens)
                for t in tasks for n in t.missing)
    return ReplayPlan(settings, tasks, renamed, sum(len(t.missing) for t in tasks), worst)


def replay_into(con: duckdb.DuckDBPyConnection, plan: ReplayPlan, home: Home, environ: dict[str, str],
                on_progress: Callable[[int, int, float], None] | None = None) -> ReplayReport:
    """Run the plan and ingest its events (from the home's landing/replay, where they stay as the record of what
    was asked); answers are cached in FLYWHEEL_HOME/replay/cache.sqlite."""
    from flywheel.ingest import ingest_file

    report = run_replay(con, plan.settings, plan.tasks, home.landing / "replay", environ,
                        cache_path=home.root / "replay" / "cache.sqlite", on_progress=on_progress)
    if report.events_file:
        ingest_file(con, report.events_file)
    return report
