"""Moving labeling data between the warehouse and Argilla, exactly once in both directions.

Push: records go from `labeling.queue` to Argilla in batches; the record id is the queue's stable
`record_id`, so Argilla updates instead of duplicating when a record is sent again, and `pushed_at` is set
only after Argilla accepted the batch. A push that fails part-way leaves the rest unmarked; the next push
sends them.

Pull: every submitted or discarded response comes into `labeling.labels`, one row per (record, annotator);
an unchanged response is left alone, a changed one replaces the old row (revision + 1), drafts stay in Argilla.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import httpx

from flywheel.labeling.agreement import compute_agreement
from flywheel.labeling.client import ArgillaTarget, ArgillaUnavailable
from flywheel.labeling.datasets import DatasetSpec
from flywheel.labeling.store import ensure_labeling_tables
from flywheel.warehouse import transaction

PUSH_BATCH = 50  # the SDK sends at most 50 records a request (it lowers a larger batch size, with a warning)


@dataclass
class PushReport:
    dataset: str
    pending_before: int
    pushed: int = 0


@dataclass
class PullReport:
    dataset: str
    responses_seen: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    drafts_skipped: int = 0
    progress: dict[str, Any] = field(default_factory=dict)
    agreement: dict[str, float | None] = field(default_factory=dict)
    requeued: int = 0


def _api_errors() -> tuple[type[BaseException], ...]:
    from argilla._exceptions import ArgillaError

    return (httpx.HTTPError, ArgillaError, ConnectionError, TimeoutError)


def dataset_for(target: ArgillaTarget, spec: DatasetSpec, client=None, create: bool = True):
    """The Argilla dataset of a spec in the target's workspace, created from schemas/labeling when missing."""
    import argilla as rg

    client = client or target.client()
    try:
        with warnings.catch_warnings():
            # The SDK warns on every lookup that finds nothing; "missing" is an expected answer here.
            warnings.simplefilter("ignore", UserWarning)
            workspace = client.workspaces(target.workspace)
            if workspace is None and create:
                workspace = rg.Workspace(name=target.workspace, client=client).create()
            existing = client.datasets(name=spec.name, workspace=workspace) if workspace is not None else None
        if existing is None:
            return None if not create else rg.Dataset(name=spec.name, workspace=workspace,
                                                       settings=spec.settings(), client=client).create()
        if create:
            _add_new_settings(existing, spec)
        return existing
    except _api_errors() as error:
        raise ArgillaUnavailable(f"Argilla at {target.api_url} failed while opening dataset {spec.name!r}: "
                                 f"{error}") from error


def _add_new_settings(dataset, spec: DatasetSpec) -> None:
    """Metadata properties and vectors added to the YAML since the dataset was created are added to it too
    (Argilla allows that on a published dataset; fields and questions are fixed once records exist)."""
    wanted = spec.settings()
    have = {p.name for p in [*dataset.settings.metadata, *dataset.settings.vectors]}
    missing = [p for p in [*wanted.metadata, *wanted.vectors] if p.name not in have]
    for prop in missing:
        dataset.settings.add(prop)
    if missing:
        dataset.settings.update()


def _to_record(payload: dict[str, Any]):
    import argilla as rg

    return rg.Record(
        id=payload["id"],
        fields=payload["fields"],
        metadata=payload.get("metadata") or {},
        vectors=payload.get("vectors") or {},
        suggestions=[rg.Suggestion(question_name=s["question"], value=s["value"], score=s.get("score"),
                                   agent=s.get("agent")) for s in payload.get("suggestions", [])],
    )


def push(con: duckdb.DuckDBPyConnection, target: ArgillaTarget, spec: DatasetSpec, batch_size: int = PUSH_BATCH,
         on_batch: Callable[[int, int], None] | None = None) -> PushReport:
    """Send every queued, not yet pushed record of this dataset; `on_batch(pushed, total)` after each batch."""
    ensure_labeling_tables(con)
    rows = con.execute("SELECT record_id, record FROM labeling.queue WHERE dataset = ? AND pushed_at IS NULL "
                       "ORDER BY queued_at, record_id", [spec.name]).fetchall()
    report = PushReport(spec.name, len(rows))
    if not rows:
        return report
    dataset = dataset_for(target, spec)
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        try:
            dataset.records.log([_to_record(json.loads(payload)) for _, payload in batch], batch_size=batch_size)
        except _api_errors() as error:
            raise ArgillaUnavailable(
                f"pushing to Argilla at {target.api_url} failed after {report.pushed} of {len(rows)} records of "
                f"{spec.name!r} ({type(error).__name__}: {error}); the other {len(rows) - report.pushed} stay queued "
                "and the next push sends them") from error
        with transaction(con):
            con.execute("UPDATE labeling.queue SET pushed_at = ? WHERE record_id IN (SELECT unnest(?))",
                        [datetime.now(UTC), [record_id for record_id, _ in batch]])
        report.pushed += len(batch)
        if on_batch:
            on_batch(report.pushed, len(rows))
    return report


def _answers_of(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{user_id: {"status": ..., "answers": {question: value}}} for one record of Argilla's REST API."""
    return {
        str(response["user_id"]): {
            "status": str(response["status"]),
            "answers": {q: v.get("value") for q, v in (response.get("values") or {}).items()},
        }
        for response in record.get("responses") or []
    }


def _records_with_responses(target: ArgillaTarget, dataset_id: Any, page: int = 1000) -> Iterator[dict[str, Any]]:
    """Every record of a dataset with all its responses, page by page (oldest first, so records pushed
    meanwhile come at the end). Read over REST rather than with the SDK: the SDK 2.8 fails on a discarded
    response without values, which is what the UI's Discard button stores."""
    with httpx.Client(base_url=target.api_url, headers={"X-Argilla-Api-Key": target.api_key},
                      timeout=target.timeout) as http:
        offset = 0
        while True:
            answer = http.get(f"/api/v1/datasets/{dataset_id}/records",
                              params={"include": "responses", "offset": offset, "limit": page})
            answer.raise_for_status()
            items = answer.json()["items"]
            yield from items
            if len(items) < page:
                return
            offset += len(items)


def _usernames(client) -> dict[str, str]:
    try:
        return {str(user.id): user.username for user in client.users}
    except Exception:  # listing users needs an owner key; names are a nicety, ids are what count
        return {}


def pull(con: duckdb.DuckDBPyConnection, target: ArgillaTarget, spec: DatasetSpec,
         agreement_threshold: float = 0.5, max_rounds: int = 3) -> PullReport:
    """Bring submitted and discarded responses into labeling.labels; then agreement and re-queueing."""
    ensure_labeling_tables(con)
    report = PullReport(spec.name)
    client = target.client()
    dataset = dataset_for(target, spec, client=client, create=False)
    if dataset is None:
        return report
    try:
        usernames = _usernames(client)
        pulled = [(str(record["external_id"]), user_id, entry)
                  for record in _records_with_responses(target, dataset.id)
                  for user_id, entry in _answers_of(record).items()]
        report.progress = dict(dataset.progress())
    except _api_errors() as error:
        raise ArgillaUnavailable(f"pulling from Argilla at {target.api_url} failed ({type(error).__name__}: "
                                 f"{error}); nothing was written, the next pull catches up") from error
    existing = dict(con.execute("SELECT record_id || '|' || user_id, answers_hash FROM labeling.labels "
                                "WHERE dataset = ?", [spec.name]).fetchall())
    queue = {r[0]: r[1:] for r in con.execute(
        "SELECT record_id, request_id, request_id_b FROM labeling.queue WHERE dataset = ?", [spec.name]).fetchall()}
    now = datetime.now(UTC)
    upserts = []
    for record_id, user_id, entry in pulled:
        report.responses_seen += 1
        if entry["status"] == "draft":
            report.drafts_skipped += 1
            continue
        answers = json.dumps(entry["answers"], sort_keys=True, default=str)
        digest = hashlib.sha256(f"{entry['status']}|{answers}".encode()).hexdigest()
        previous = existing.get(f"{record_id}|{user_id}")
        if previous == digest:
            report.unchanged += 1
            continue
        if previous is None:
            report.new += 1
        else:
            report.changed += 1
        request_id, request_id_b = queue.get(record_id, (None, None))
        upserts.append([record_id, user_id, usernames.get(user_id), spec.name, spec.kind, request_id, request_id_b,
                        entry["status"], answers, digest, now, now])
    if upserts:
        with transaction(con):  # all of the pull's answers, or none
            con.executemany("""
                MERGE INTO labeling.labels USING (
                    SELECT * FROM (VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?::JSON, ?, 1, ?::TIMESTAMPTZ, ?::TIMESTAMPTZ))
                    pulled(record_id, user_id, username, dataset, kind, request_id, request_id_b, status, answers,
                           answers_hash, revision, first_pulled_at, updated_at)
                ) pulled ON labels.record_id = pulled.record_id AND labels.user_id = pulled.user_id
                WHEN MATCHED THEN UPDATE SET
                    status = pulled.status, answers = pulled.answers, answers_hash = pulled.answers_hash,
                    username = coalesce(pulled.username, labels.username),
                    revision = labels.revision + 1, updated_at = pulled.updated_at
                WHEN NOT MATCHED THEN INSERT BY NAME
            """, upserts)
    report.agreement, report.requeued = compute_agreement(con, spec, threshold=agreement_threshold,
                                                          max_rounds=max_rounds)
    return report
