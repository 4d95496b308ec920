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
    done = []
    with warehouse.session(context.log) as con:
        for path in files:
            report = ingest_file(con, path, batch_lines=config.batch_lines, workers="auto")
            context.log.info(f"{path.name}: {report.outcome}, {report.lines_read} lines, "
                             f"{report.lines_ingested} ingested, {report.lines_quarantined} quarantined, "
                             f"{report.lines_duplicate} duplicate")
            if report.is_new:  # a file ingested before was reported then
                for warning in report.warnings:
                    context.log.warning(warning)
                for example in report.quarantine_examples[:3]:
                    context.log.warning(f"quarantined {example}")
            done.append(report)
        summary = reports.ingest_summary(con, done)
    register_days(context.instance, summary.days_with_data)  # the UI shows every day's partition as soon as it has data

    files_md = reports.markdown_table(reports.FILE_COLUMNS, [list(r.values()) for r in reports.file_rows(done)])
    common = {"files_seen": len(done), "files_new": sum(r.is_new for r in done),
              "files_damaged": sum(r.is_new and r.outcome in ("partial", "failed") for r in done),
              "files": dg.MetadataValue.md(files_md),
              "all_files_reconcile": all(r.reconciles for r in done)}
    yield dg.MaterializeResult(
        asset_key=["raw", "interactions"],
        metadata={**common, "rows_total": summary.totals["interactions"], "rows_new": summary.new_rows["interactions"],
                  "parquet_segments": summary.segments.get("interactions", 0),
                  "days_touched": dg.MetadataValue.json(summary.days_touched),
                  "rows_per_day": dg.MetadataValue.md(reports.markdown_table(
                      ("event_date", "rows"), summary.rows_per_day["interactions"])),
                  "preview": dg.MetadataValue.md(summary.interactions_preview)},
    )
    yield dg.MaterializeResult(
        asset_key=["raw", "feedback"],
        metadata={**common, "rows_total": summary.totals["feedback"], "rows_new": summary.new_rows["feedback"],
                  "parquet_segments": summary.segments.get("feedback", 0),
                  "rows_per_day": dg.MetadataValue.md(reports.markdown_table(
                      ("event_date", "rows"), summary.rows_per_day["feedback"]))},
    )
    yield dg.MaterializeResult(
        asset_key=["raw", "quarantine"],
        metadata={**common, "rows_total": summary.totals["quarantined_lines"],
                  "rows_new": summary.new_rows["quarantine"],
                  "latest": dg.MetadataValue.md(summary.quarantine_preview)},
    )
