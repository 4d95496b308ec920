"""Every SQL model in dbt_like_sql/ as a Dagster asset, and the reference tables they join.

Assets are generated from the files: adding a `.sql` file adds an asset with the right upstreams.
Incremental models are partitioned by day.
"""

import hashlib
import os
from datetime import date

import dagster as dg

from flywheel import reports
from flywheel.reference import write_model_prices
from flywheel.sqlmodels import SqlModel, load_models, materialize
from pipelines.resources import WarehouseResource

WAREHOUSE_POOL = "warehouse"
DAILY = dg.DailyPartitionsDefinition(
    start_date=os.environ.get("FLYWHEEL_START_DATE", "2025-01-01"), timezone="UTC", end_offset=1
)
SOURCES = {("raw", "interactions"), ("raw", "feedback"), ("raw", "quarantine"), ("reference", "model_prices")}


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


def _asset_for(model: SqlModel) -> dg.AssetsDefinition:
    incremental = model.materialized == "incremental"

    @dg.asset(
        key=[model.layer, model.name],
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
        finally:
            con.close()
        return dg.MaterializeResult(metadata={
            "rows_written": result.rows_written,
            "rows_total": result.rows_total,
            "materialized": model.materialized,
            "preview": dg.MetadataValue.md(preview),
        })

    return build


SQL_MODELS = load_models(sources=SOURCES)
sql_model_assets = [_asset_for(model) for model in SQL_MODELS]
