"""Building the models: one job that builds a range of days (and the whole-history assets) in one run, and a
sensor that starts it for every day whose raw data changed since it was last built, however old."""

import hashlib

import dagster as dg

from flywheel import warehouse
from flywheel.settings import Home
from pipelines.builds import plan_build, range_tags
from pipelines.defs.dedup.assets import near_duplicate_clusters
from pipelines.defs.reference.assets import model_prices
from pipelines.defs.sql_models.assets import sql_model_assets
from pipelines.shared import WAREHOUSE_WRITE_TAGS

# The marts (and the splits they are cut by) are built by the publish job, which releases them.
BUILD_ASSETS = [model_prices, near_duplicate_clusters,
                *(asset for asset in sql_model_assets if asset.key.path[0] != "marts")]

build_job = dg.define_asset_job(
    "build_job",
    selection=dg.AssetSelection.assets(*BUILD_ASSETS),
    description="Build the reference prices, SQL models and near-duplicate clusters (staging → dedup → "
                "intermediate) for a range of days in one run.",
    tags=WAREHOUSE_WRITE_TAGS,
    # Embedded: steps write one DuckDB file one at a time (the warehouse pool), so a process per step would only
    # add start-up. Scale: the profile's executor (Celery workers) takes the steps.
    executor_def=None if Home.from_env().lake else dg.in_process_executor,
)


def build_requests(instance: dg.DagsterInstance, home: Home) -> list[dg.RunRequest] | dg.SkipReason:
    """Run requests for whatever needs building, keyed by what they build from, so a request is made once."""
    if not warehouse.exists(home):
        return dg.SkipReason("no warehouse yet")
    try:
        with warehouse.session(home, read_only=True, lock_timeout_s=1) as con:
            plan = plan_build(instance, con, BUILD_ASSETS)
    except warehouse.WarehouseBusyError:
        return dg.SkipReason("the warehouse is being written; checking again at the next tick")
    if plan.empty:
        return dg.SkipReason("every day is built from the latest data")
    stamp = plan.watermark.isoformat() if plan.watermark else "empty"
    requests = [dg.RunRequest(run_key=f"days {days} from {stamp}", tags=range_tags(days)) for days in plan.ranges]
    if plan.other_assets:
        names = ",".join(sorted(k.to_user_string() for k in plan.other_assets))
        requests.append(dg.RunRequest(run_key=f"{hashlib.sha1(names.encode()).hexdigest()[:8]} from {stamp}",
                                      asset_selection=plan.other_assets))
    return requests


@dg.sensor(
    job=build_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Builds every day whose raw data changed since its last build (new interactions, or feedback on "
                "them), whatever its date, in as few runs as the days allow.",
)
def build_sensor(context: dg.SensorEvaluationContext):
    outcome = build_requests(context.instance, Home.from_env())
    if isinstance(outcome, dg.SkipReason):
        return outcome
    return dg.SensorResult(run_requests=outcome)
