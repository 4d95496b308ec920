"""Every SQL model in dbt_like_sql/ as a Dagster asset, with its expectation suite as asset checks.

Assets are generated from the files: adding a `.sql` file adds an asset with the right upstreams.
Incremental models are partitioned by day and build a range of days in one run (a backfill of a year is one
run). Every asset records the warehouse watermark it was built from as its data version (pipelines/builds.py).
"""

import hashlib
import json

import dagster as dg

from flywheel import reports
from flywheel.days import DayRange, warehouse_watermark
from flywheel.quality import SuiteOutcome, check_relation, has_suite, suite_path
from flywheel.settings import REPO_ROOT
from flywheel.sqlmodels import SqlModel, load_models, materialize, model_preview_sql
from pipelines.builds import data_version
from pipelines.resources import WarehouseResource
from pipelines.shared import DAYS, WAREHOUSE_POOL

# The SQL calls Python (redaction, token estimates, embeddings) and reads the selection rules: a change there
# changes what the models make.
FUNCTIONS_VERSION = hashlib.sha1(b"".join(
    (REPO_ROOT / path).read_bytes() for path in ("flywheel/redact.py", "flywheel/sqlfunctions.py",
                                                 "flywheel/pricing.py", "flywheel/embed.py", "schemas/curation.yaml"))
).hexdigest()[:12]


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
    code_version = hashlib.sha1(f"{model.sql}|{FUNCTIONS_VERSION}".encode()).hexdigest()[:12]
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
        with warehouse.session(context.log) as con:
            watermark = warehouse_watermark(con)
            result = materialize(con, model, days)
            if result.recreated:
                context.log.warning(f"{model.relation}: its columns changed, so the table was made anew; the days "
                                    "outside this run are rebuilt by the next build (they need it: new code)")
            preview = reports.preview(con, model_preview_sql(model, days))
            outcome = check_relation(con, model.relation, days) if checks else None
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


SQL_MODELS = load_models()
sql_model_assets = [_asset_for(model) for model in SQL_MODELS]
