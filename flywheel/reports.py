"""Summaries of the warehouse for people: the CLI prints them, Dagster shows them as metadata."""

from __future__ import annotations

from typing import Any

import duckdb

from flywheel.ingest.loader import FileReport

FILE_COLUMNS = ("file", "outcome", "format", "lines_read", "ingested", "quarantined", "duplicate", "blank",
                "reconciles")


def file_rows(reports: list[FileReport]) -> list[dict[str, Any]]:
    """One row per file offered: what this run read and stored from it (nothing, for a file known before; its
    earlier counts stay in raw.ingest_ledger), and whether the file's lines all reconcile."""
    rows = []
    for r in reports:
        new = r.is_new
        rows.append({"file": r.path, "outcome": r.outcome.replace("_", " "), "format": r.format,
                     "lines_read": r.lines_read if new else 0, "ingested": r.lines_ingested if new else 0,
                     "quarantined": r.lines_quarantined if new else 0, "duplicate": r.lines_duplicate if new else 0,
                     "blank": r.lines_blank if new else 0, "reconciles": r.reconciles})
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


def markdown_table(columns: list[str] | tuple[str, ...], rows: list[tuple] | list[list]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [str(v).replace("|", "\\|").replace("\n", " ")[:120] for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
