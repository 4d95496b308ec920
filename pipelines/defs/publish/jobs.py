"""When releases are published: weekly, and after a label pull that brought new labels."""

import dagster as dg

from pipelines.shared import WAREHOUSE_WRITE_TAGS

# The signals (labels change them), the splits, the marts and the releases; staging is the build's.
publish_job = dg.define_asset_job(
    "publish_job",
    selection=(dg.AssetSelection.assets(dg.AssetKey(["intermediate", "int_signals"]),
                                        dg.AssetKey(["curation", "splits"]),
                                        dg.AssetKey(["curation", "eval_selection"]))
               | dg.AssetSelection.groups("marts", "releases")),
    description="Rebuild the quality signals, splits and marts, then publish a release of each curated dataset "
                "whose rows changed.",
    tags=WAREHOUSE_WRITE_TAGS,
    executor_def=dg.in_process_executor,
)

weekly_publish_schedule = dg.ScheduleDefinition(
    name="weekly_publish",
    job=publish_job,
    cron_schedule="0 6 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every Monday at 06:00 UTC: publish whatever changed in the curated datasets.",
)


@dg.asset_sensor(
    asset_key=dg.AssetKey(["labeling", "labels"]),
    job=publish_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Publishes after a label pull that brought new or changed labels.",
)
def publish_after_new_labels(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    metadata = asset_event.asset_materialization.metadata if asset_event.asset_materialization else {}
    fresh = sum(value.value for key, value in metadata.items()
                if key.endswith(("/new", "/changed")) and isinstance(value.value, int))
    if not fresh:
        return dg.SkipReason("the latest label pull brought nothing new")
    return dg.RunRequest(run_key=f"labels {asset_event.storage_id}")
