"""Building the SQL models: a daily-partitioned job, a sensor that runs it for the days new data touched,
and a nightly schedule for yesterday as a safety net."""


import dagster as dg

from pipelines.defs.ingest.jobs import WAREHOUSE_WRITE_TAGS
from pipelines.defs.sql_models.assets import DAILY, SQL_MODELS

daily_models_job = dg.define_asset_job(
    "daily_models_job",
    selection=dg.AssetSelection.assets(dg.AssetKey(["dedup", "clusters"]),
                                       *[dg.AssetKey([m.layer, m.name]) for m in SQL_MODELS]),
    partitions_def=DAILY,
    description="Build every SQL model for one day (staging → intermediate → marts).",
    tags=WAREHOUSE_WRITE_TAGS,
)

daily_models_schedule = dg.build_schedule_from_partitioned_job(
    daily_models_job, name="daily_models", hour_of_day=3, minute_of_hour=30,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


@dg.asset_sensor(
    asset_key=dg.AssetKey(["raw", "interactions"]),
    job=daily_models_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After each ingestion, rebuilds the days it touched: new interactions, or new feedback on them.",
)
def touched_days_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    materialization = asset_event.asset_materialization
    days = list(materialization.metadata["days_touched"].value) if materialization else []
    valid = set(DAILY.get_partition_keys())
    for day in days:
        if day in valid:
            yield dg.RunRequest(run_key=f"{asset_event.run_id}-{day}", partition_key=day)
        else:
            context.log.warning(f"day {day} is outside the daily partitions (FLYWHEEL_START_DATE); not rebuilt")
