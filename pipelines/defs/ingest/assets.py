"""Landing files → raw tables (interactions, feedback, quarantine), exactly once.

No `from __future__ import annotations` here: Dagster reads the Config annotation at definition time.
"""


import dagster as dg

from flywheel import reports
from flywheel.ingest import discover, ingest_file
from flywheel.ingest.loader import DEFAULT_BATCH_LINES
from pipelines.builds import register_days
from pipelines.resources import WarehouseResource
from pipelines.shared import WAREHOUSE_POOL

LANDING = dg.AssetSpec(
    key=["landing", "files"],
    description="Files dropped into FLYWHEEL_HOME/landing (JSONL, .jsonl.gz, Parquet, OpenAI pairs, mapped exports).",
    group_name="landing",
    kinds={"file"},
)


class IngestConfig(dg.Config):
    paths: list[str] = []  # noqa: RUF012 (pydantic copies defaults)  files or folders; empty = whole landing folder
    batch_lines: int = DEFAULT_BATCH_LINES


@dg.multi_asset(
    specs=[
        dg.AssetSpec(["raw", "interactions"], deps=[LANDING], group_name="raw", kinds={"duckdb", "parquet"},
                     description="Every interaction event once, keyed by request_id, with event_date as its day "
                                 "(a view: small files' rows in DuckDB, large files' Parquet segments)."),
        dg.AssetSpec(["raw", "feedback"], deps=[LANDING], group_name="raw", kinds={"duckdb", "parquet"},
                     description="Feedback events keyed by feedback_id; may precede their interaction."),
        dg.AssetSpec(["raw", "quarantine"], deps=[LANDING], group_name="raw", kinds={"duckdb"},
                     description="Lines that failed parsing or the contract: file, line, reason, raw text."),
    ],
    pool=WAREHOUSE_POOL,
    can_subset=False,
)
def raw_events(context: dg.AssetExecutionContext, config: IngestConfig, warehouse: WarehouseResource):
    # paths in the run config are relative to the landing folder (as the sensor sends them) or absolute
    files = discover([warehouse.landing / p for p in config.paths] if config.paths else [warehouse.landing])
    con = warehouse.connect(context.log)
    try:
        done = []
        for path in files:
            report = ingest_file(con, path, batch_lines=config.batch_lines, workers="auto")
            context.log.info(f"{path.name}: {report.outcome}, {report.lines_read} lines, "
                             f"{report.lines_ingested} ingested, {report.lines_quarantined} quarantined, "
                             f"{report.lines_duplicate} duplicate")
            if report.is_new:  # a file ingested before was reported then
                for example in report.quarantine_examples[:3]:
                    context.log.warning(f"quarantined {example}")
            done.append(report)
        counts = reports.raw_counts(con)
        new = {"interactions": 0, "feedback": 0, "quarantine": sum(r.lines_quarantined for r in done if r.is_new)}
        file_table = reports.file_rows(done)
        per_day = {t: reports.rows_per_day(con, t) for t in ("interactions", "feedback")}
        preview = con.execute("""SELECT request_id, ts, app_id, model, latency_ms, tokens_in, tokens_out, cost_usd
                                 FROM raw.interactions ORDER BY ingested_at DESC, source_line LIMIT 5""").fetchall()
        quarantine_preview = con.execute("""SELECT source_file, line_no, reason FROM raw.quarantine
                                            ORDER BY quarantined_at DESC, line_no LIMIT 10""").fetchall()
        segments = dict(con.execute("SELECT table_name, count(*) FROM raw.segments GROUP BY 1").fetchall())
        new_files = [r.file_hash for r in done if r.is_new]
        for table in ("interactions", "feedback"):
            new[table] = con.execute(
                f"SELECT count(*) FROM raw.{table} WHERE file_hash IN (SELECT unnest(?::VARCHAR[]))", [new_files]
            ).fetchall()[0][0]
        # The days whose downstream partitions must be rebuilt: new interactions, or new feedback on them.
        days_touched = [str(day) for (day,) in con.execute("""
            SELECT event_date FROM raw.interactions WHERE file_hash IN (SELECT unnest($1::VARCHAR[]))
            UNION
            SELECT i.event_date FROM raw.feedback f JOIN raw.interactions i USING (request_id)
            WHERE f.file_hash IN (SELECT unnest($1::VARCHAR[]))
            ORDER BY 1""", [new_files]).fetchall()]
        days_with_data = [day for (day,) in con.execute("SELECT DISTINCT event_date FROM raw.interactions").fetchall()]
    finally:
        con.close()
    register_days(context.instance, days_with_data)  # the UI shows every day's partition as soon as it has data

    files_md = reports.markdown_table(reports.FILE_COLUMNS, [list(r.values()) for r in file_table])
    common = {"files_seen": len(done), "files_new": sum(r.is_new for r in done),
              "files": dg.MetadataValue.md(files_md),
              "all_files_reconcile": all(r.reconciles for r in done)}
    yield dg.MaterializeResult(
        asset_key=["raw", "interactions"],
        metadata={**common, "rows_total": counts["interactions"], "rows_new": new["interactions"],
                  "parquet_segments": segments.get("interactions", 0),
                  "days_touched": dg.MetadataValue.json(days_touched),
                  "rows_per_day": dg.MetadataValue.md(reports.markdown_table(("event_date", "rows"),
                                                                              per_day["interactions"])),
                  "preview": dg.MetadataValue.md(reports.markdown_table(
                      ("request_id", "ts", "app", "model", "latency_ms", "tokens_in", "tokens_out", "cost_usd"),
                      preview))},
    )
    yield dg.MaterializeResult(
        asset_key=["raw", "feedback"],
        metadata={**common, "rows_total": counts["feedback"], "rows_new": new["feedback"],
                  "parquet_segments": segments.get("feedback", 0),
                  "rows_per_day": dg.MetadataValue.md(reports.markdown_table(("event_date", "rows"),
                                                                              per_day["feedback"]))},
    )
    yield dg.MaterializeResult(
        asset_key=["raw", "quarantine"],
        metadata={**common, "rows_total": counts["quarantined_lines"], "rows_new": new["quarantine"],
                  "latest": dg.MetadataValue.md(reports.markdown_table(("file", "line", "reason"),
                                                                        quarantine_preview))},
    )
