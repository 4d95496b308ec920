"""Every SQL model in dbt_like_sql/ as a Dagster asset, and the reference tables they join.

Assets are generated from the files: adding a `.sql` file adds an asset with the right upstreams.
Incremental models are partitioned by day.
"""

import hashlib
import json
import os
from datetime import date

import dagster as dg

from flywheel import reports
from flywheel.dedup import DedupConfig, MinHasher, dedup_day
from flywheel.quality import SuiteOutcome, check_relation, has_suite, suite_path
from flywheel.reference import write_model_prices
from flywheel.sqlmodels import SqlModel, load_models, materialize
from pipelines.resources import WarehouseResource

WAREHOUSE_POOL = "warehouse"
DAILY = dg.DailyPartitionsDefinition(
    start_date=os.environ.get("FLYWHEEL_START_DATE", "2025-01-01"), timezone="UTC", end_offset=1
)
SOURCES = {("raw", "interactions"), ("raw", "feedback"), ("raw", "quarantine"), ("reference", "model_prices"),
           ("dedup", "clusters")}


@dg.asset(
    key=["reference", "model_prices"],
    deps=[dg.AssetKey(["raw", "interactions"])],
    group_name="reference",
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    description="Every model name seen in the traffic, resolved against schemas/prices.yaml.",
)
def model_prices(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    con = warehouse.connect(context.log)
    try:
        counts = write_model_prices(con)
        unpriced = [r[0] for r in con.execute("""
            SELECT DISTINCT model FROM raw.interactions
            WHERE model NOT IN (SELECT model FROM reference.model_prices) ORDER BY 1 LIMIT 20""").fetchall()]
    finally:
        con.close()
    if unpriced:
        context.log.warning(f"models without a price (add them to schemas/prices.yaml): {unpriced}")
    return dg.MaterializeResult(metadata={**counts, "unpriced_models": ", ".join(unpriced) or "none"})


@dg.asset(
    key=["dedup", "clusters"],
    deps=[dg.AssetKey(["staging", "stg_interactions"])],
    partitions_def=DAILY,
    group_name="dedup",
    kinds={"duckdb", "python"},
    pool=WAREHOUSE_POOL,
    description="Near-duplicate clusters of prompts (MinHash + LSH), matched against every earlier day; "
                "cluster_id is the request_id of the cluster's earliest member.",
)
def near_duplicate_clusters(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    day = date.fromisoformat(context.partition_key)
    con = warehouse.connect(context.log)
    try:
        result = dedup_day(con, day, MinHasher(DedupConfig()))
        largest = con.execute("""SELECT cluster_id, count(*) AS members FROM dedup.clusters
                                 WHERE cluster_id IN (SELECT cluster_id FROM dedup.clusters WHERE event_date = ?)
                                 GROUP BY 1 ORDER BY 2 DESC LIMIT 5""", [day]).fetchall()
    finally:
        con.close()
    return dg.MaterializeResult(metadata={
        "texts": result.texts, "matched_earlier_days": result.matched_earlier, "new_clusters": result.new_clusters,
        "merged_clusters": result.merged_clusters,
        "largest_clusters": dg.MetadataValue.md(reports.markdown_table(("cluster_id", "members"), largest)),
    })


def _check_results(outcome: SuiteOutcome) -> list[dg.AssetCheckResult]:
    results = []
    for check, severity, dg_severity in (("expectations_error", "critical", dg.AssetCheckSeverity.ERROR),
                                         ("expectations_warn", "warning", dg.AssetCheckSeverity.WARN)):
        mine = [o for o in outcome.outcomes if o.severity == severity]
        failing = [o for o in mine if not o.success]
        rows = [(o.expectation, o.column, o.unexpected_count, o.error or json.dumps(o.examples, default=str)[:200])
                for o in failing]
        results.append(dg.AssetCheckResult(
            check_name=check, passed=not failing, severity=dg_severity,
            metadata={
                "suite": outcome.suite, "rows_checked": outcome.rows, "expectations": len(mine),
                "failing_expectations": len(failing),
                "failing_rows": sum(o.unexpected_count for o in failing),
                "failures": dg.MetadataValue.md(reports.markdown_table(
                    ("expectation", "column", "unexpected", "examples"), rows) if rows else "none"),
            },
        ))
    return results


def _asset_for(model: SqlModel) -> dg.AssetsDefinition:
    incremental = model.materialized == "incremental"
    key = dg.AssetKey([model.layer, model.name])
    checks = [
        dg.AssetCheckSpec("expectations_error", asset=key, blocking=True,
                          description=f"ERROR expectations of {suite_path(model.relation).name}: block downstream"),
        dg.AssetCheckSpec("expectations_warn", asset=key,
                          description=f"WARN expectations of {suite_path(model.relation).name}: reported"),
    ] if has_suite(model.relation) else []

    @dg.asset(
        key=key,
        check_specs=checks,
        deps=[dg.AssetKey(list(ref)) for ref in model.depends_on],
        partitions_def=DAILY if incremental else None,
        group_name=model.layer,
        kinds={"duckdb", "sql"},
        description=f"{model.description}\n\nSQL: dbt_like_sql/{model.layer}/{model.name}.sql",
        code_version=hashlib.sha1(model.sql.encode()).hexdigest()[:12],
        pool=WAREHOUSE_POOL,
    )
    def build(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        day = date.fromisoformat(context.partition_key) if incremental else None
        con = warehouse.connect(context.log)
        try:
            result = materialize(con, model, day)
            where = f"WHERE {model.partition_by} = DATE '{day}'" if day else ""
            cursor = con.execute(f"SELECT * FROM {model.relation} {where} LIMIT 5")
            columns = [d[0] for d in cursor.description]
            preview = reports.markdown_table(columns[:8], [row[:8] for row in cursor.fetchall()])
            outcome = check_relation(con, model.relation, day) if checks else None
        finally:
            con.close()
        return dg.MaterializeResult(
            metadata={
                "rows_written": result.rows_written,
                "rows_total": result.rows_total,
                "materialized": model.materialized,
                "preview": dg.MetadataValue.md(preview),
            },
            check_results=_check_results(outcome) if outcome else None,
        )

    return build


SQL_MODELS = load_models(sources=SOURCES)
sql_model_assets = [_asset_for(model) for model in SQL_MODELS]
