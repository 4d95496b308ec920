"""Every SQL model in dbt_like_sql/ as a Dagster asset, the near-duplicate clusters, and the reference tables
they join.

Assets are generated from the files: adding a `.sql` file adds an asset with the right upstreams.
Incremental models are partitioned by day and build a range of days in one run (a backfill of a year is one
run). Every asset records the warehouse watermark it was built from as its data version (pipelines/builds.py).
"""

import hashlib
import json

import dagster as dg

from flywheel import reports
from flywheel.days import DayRange, warehouse_watermark
from flywheel.dedup import DedupConfig, MinHasher, build_clusters
from flywheel.quality import SuiteOutcome, check_relation, has_suite, suite_path
from flywheel.reference import write_model_prices
from flywheel.settings import SCHEMAS_DIR
from flywheel.sqlmodels import SqlModel, load_models, materialize
from pipelines.builds import data_version
from pipelines.resources import WarehouseResource
from pipelines.shared import DAYS, WAREHOUSE_POOL

SOURCES = {("raw", "interactions"), ("raw", "feedback"), ("raw", "quarantine"), ("reference", "model_prices"),
           ("dedup", "clusters")}
DEDUP_CODE_VERSION = hashlib.sha1(repr(DedupConfig()).encode()).hexdigest()[:12]
PRICES_CODE_VERSION = hashlib.sha1((SCHEMAS_DIR / "prices.yaml").read_bytes()).hexdigest()[:12]


@dg.asset(
    key=["reference", "model_prices"],
    deps=[dg.AssetKey(["raw", "interactions"])],
    group_name="reference",
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    code_version=PRICES_CODE_VERSION,
    description="Every model name seen in the traffic, resolved against schemas/prices.yaml.",
)
def model_prices(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    con = warehouse.connect(context.log)
    try:
        watermark = warehouse_watermark(con)
        counts = write_model_prices(con)
        unpriced = [r[0] for r in con.execute("""
            SELECT DISTINCT model FROM raw.interactions
            WHERE model NOT IN (SELECT model FROM reference.model_prices) ORDER BY 1 LIMIT 20""").fetchall()]
    finally:
        con.close()
    if unpriced:
        context.log.warning(f"models without a price (add them to schemas/prices.yaml): {unpriced}")
    return dg.MaterializeResult(metadata={**counts, "unpriced_models": ", ".join(unpriced) or "none"},
                                data_version=data_version(watermark, PRICES_CODE_VERSION))


@dg.asset(
    key=["dedup", "clusters"],
    deps=[dg.AssetKey(["staging", "stg_interactions"])],
    group_name="dedup",
    kinds={"duckdb", "python"},
    pool=WAREHOUSE_POOL,
    code_version=DEDUP_CODE_VERSION,
    description="Near-duplicate clusters of prompts (MinHash + LSH) over every day at once, so they do not "
                "depend on the order days were built in; cluster_id is the request_id of the cluster's "
                "earliest member.",
)
def near_duplicate_clusters(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    con = warehouse.connect(context.log)
    try:
        watermark = warehouse_watermark(con)
        result = build_clusters(con, MinHasher(DedupConfig()))
        largest = con.execute("""SELECT cluster_id, count(*) AS members FROM dedup.clusters
                                 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5""").fetchall()
    finally:
        con.close()
    return dg.MaterializeResult(
        metadata={
            "interactions": result.interactions, "distinct_prompts": result.distinct_prompts,
            "clusters": result.clusters, "clusters_with_several_members": result.multi_member_clusters,
            "largest_clusters": dg.MetadataValue.md(reports.markdown_table(("cluster_id", "members"), largest)),
        },
        data_version=data_version(watermark, DEDUP_CODE_VERSION),
    )


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
    code_version = hashlib.sha1(model.sql.encode()).hexdigest()[:12]
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
        partitions_def=DAYS if incremental else None,
        backfill_policy=dg.BackfillPolicy.single_run() if incremental else None,
        group_name=model.layer,
        kinds={"duckdb", "sql"},
        description=f"{model.description}\n\nSQL: dbt_like_sql/{model.layer}/{model.name}.sql",
        code_version=code_version,
        pool=WAREHOUSE_POOL,
    )
    def build(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        days = None
        if incremental:
            keys = context.partition_key_range
            days = DayRange.parse(keys.start, keys.end)
        con = warehouse.connect(context.log)
        try:
            watermark = warehouse_watermark(con)
            result = materialize(con, model, days)
            if result.recreated:
                context.log.warning(f"{model.relation}: its columns changed, so the table was made anew; the days "
                                    "outside this run are rebuilt by the next build (they need it: new code)")
            where = (f"WHERE {model.partition_by} BETWEEN DATE '{days.first}' AND DATE '{days.last}'"
                     if days else "")
            cursor = con.execute(f"SELECT * FROM {model.relation} {where} LIMIT 5")
            columns = [d[0] for d in cursor.description]
            preview = reports.markdown_table(columns[:8], [row[:8] for row in cursor.fetchall()])
            outcome = check_relation(con, model.relation, days) if checks else None
        finally:
            con.close()
        metadata = {"rows_written": result.rows_written, "rows_total": result.rows_total,
                    "materialized": model.materialized, "preview": dg.MetadataValue.md(preview)}
        if days:
            metadata["days_built"] = str(days)
        return dg.MaterializeResult(
            metadata=metadata,
            check_results=_check_results(outcome) if outcome else None,
            data_version=data_version(watermark, code_version),
        )

    return build


SQL_MODELS = load_models(sources=SOURCES)
sql_model_assets = [_asset_for(model) for model in SQL_MODELS]
