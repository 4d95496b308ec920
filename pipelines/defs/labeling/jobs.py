"""When labeling runs: queue new samples once a day after the models are built; pull labels every 10 minutes."""

import dagster as dg

from pipelines.shared import WAREHOUSE_WRITE_TAGS

labeling_job = dg.define_asset_job(
    "labeling_job",
    selection=dg.AssetSelection.groups("labeling"),
    description="Queue this run's labeling budget in Argilla, then pull labels back.",
    tags=WAREHOUSE_WRITE_TAGS,
)

pull_labels_job = dg.define_asset_job(
    "pull_labels_job",
    selection=dg.AssetSelection.assets(dg.AssetKey(["labeling", "labels"])),
    description="Pull submitted labels from Argilla into labeling.labels.",
    tags=WAREHOUSE_WRITE_TAGS,
)

daily_labeling_schedule = dg.ScheduleDefinition(
    name="daily_labeling",
    job=labeling_job,
    cron_schedule="30 5 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 05:30 UTC, after the nightly models: sample and push the day's labeling budget.",
)

pull_labels_schedule = dg.ScheduleDefinition(
    name="pull_labels",
    job=pull_labels_job,
    cron_schedule="*/10 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 10 minutes: bring new and changed labels from Argilla into the warehouse.",
)
