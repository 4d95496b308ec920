"""Summaries of the warehouse for people: the CLI prints them, Dagster shows them as metadata."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb

from flywheel.days import day_watermarks
from flywheel.ingest.loader import FileReport

FILE_COLUMNS = ("file", "outcome", "format", "lines_read", "ingested", "quarantined", "duplicate", "blank",
                "reconciles", "error")


def file_rows(reports: list[FileReport]) -> list[dict[str, Any]]:
    """One row per file offered: what this run read and stored from it (nothing, for a file known before; its
    earlier counts stay in raw.ingest_ledger), and whether the file's lines all reconcile."""
    rows = []
    for r in reports:
        new = r.is_new
        rows.append({"file": r.path, "outcome": r.outcome.replace("_", " "), "format": r.format,
                     "lines_read": r.lines_read if new else 0, "ingested": r.lines_ingested if new else 0,
                     "quarantined": r.lines_quarantined if new else 0, "duplicate": r.lines_duplicate if new else 0,
                     "blank": r.lines_blank if new else 0, "reconciles": r.reconciles, "error": r.error or ""})
    return rows


def raw_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    (interactions, feedback, quarantine, files) = con.execute("""
        SELECT (SELECT count(*) FROM raw.interactions), (SELECT count(*) FROM raw.feedback),
               (SELECT count(*) FROM raw.quarantine), (SELECT count(*) FROM raw.ingest_ledger)
    """).fetchall()[0]
    return {"interactions": interactions, "feedback": feedback, "quarantined_lines": quarantine, "files": files}


def rows_per_day(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, int]]:
    return [(str(day), n) for day, n in con.execute(
        f"SELECT event_date, count(*) FROM raw.{table} GROUP BY 1 ORDER BY 1"
    ).fetchall()]


def per_app_and_model(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Calls, latency, cost (logged or from the price table) and feedback per app and model."""
    return con.execute("""
        SELECT app_id, model, count(*) AS calls, round(avg(latency_ms)) AS avg_latency_ms,
               round(sum(cost_usd), 4) AS cost_usd, count(*) FILTER (WHERE n_feedback > 0) AS with_feedback,
               round(avg(feedback_score), 2) AS feedback_score
        FROM intermediate.int_interactions GROUP BY ALL ORDER BY app_id, calls DESC
    """).fetchall()


def redaction_totals(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    """(kind of redacted item, how many), most frequent first."""
    return con.execute("""SELECT kind, sum(redactions)::BIGINT FROM intermediate.int_redaction_counts
                          GROUP BY 1 ORDER BY 2 DESC, 1""").fetchall()


def cluster_count(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT count(DISTINCT cluster_id) FROM dedup.clusters").fetchall()[0][0]


def preview(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None, max_columns: int = 8) -> str:
    """The rows a query returns, as a markdown table (its first `max_columns` columns)."""
    cursor = con.execute(sql, params or [])
    columns = [d[0] for d in cursor.description][:max_columns]
    return markdown_table(columns, [row[:max_columns] for row in cursor.fetchall()])


@dataclass(frozen=True)
class IngestSummary:
    """What an ingestion run brought, for its Dagster metadata."""

    totals: dict[str, int]
    new_rows: dict[str, int]                   # interactions, feedback, quarantine added by this run
    rows_per_day: dict[str, list[tuple[str, int]]]
    segments: dict[str, int]                   # registered Parquet segments per raw table
    days_touched: list[str]                    # days with new interactions, or new feedback on them
    days_with_data: list[date]
    interactions_preview: str
    quarantine_preview: str


def ingest_summary(con: duckdb.DuckDBPyConnection, file_reports: list[FileReport]) -> IngestSummary:
    new_files = [r.file_hash for r in file_reports if r.is_new]
    new_rows = {table: con.execute(f"SELECT count(*) FROM raw.{table} WHERE file_hash IN (SELECT unnest(?))",
                                   [new_files]).fetchall()[0][0] for table in ("interactions", "feedback")}
    new_rows["quarantine"] = sum(r.lines_quarantined for r in file_reports if r.is_new)
    days_touched = [str(day) for (day,) in con.execute("""
        SELECT event_date FROM raw.interactions WHERE file_hash IN (SELECT unnest($1))
        UNION
        SELECT i.event_date FROM raw.feedback f JOIN raw.interactions i USING (request_id)
        WHERE f.file_hash IN (SELECT unnest($1))
        ORDER BY 1""", [new_files]).fetchall()]
    return IngestSummary(
        totals=raw_counts(con),
        new_rows=new_rows,
        rows_per_day={table: rows_per_day(con, table) for table in ("interactions", "feedback")},
        segments=dict(con.execute("SELECT table_name, count(*) FROM raw.segments GROUP BY 1").fetchall()),
        days_touched=days_touched,
        days_with_data=list(day_watermarks(con)),
        interactions_preview=preview(con, """
            SELECT request_id, ts, app_id AS app, model, latency_ms, tokens_in, tokens_out, cost_usd
            FROM raw.interactions ORDER BY ingested_at DESC, source_line LIMIT 5"""),
        quarantine_preview=preview(con, """
            SELECT source_file AS file, line_no AS line, reason FROM raw.quarantine
            ORDER BY quarantined_at DESC, line_no LIMIT 10"""),
    )


def markdown_table(columns: list[str] | tuple[str, ...], rows: list[tuple] | list[list]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [str(v).replace("|", "\\|").replace("\n", " ")[:120] for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
