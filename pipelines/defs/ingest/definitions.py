import dagster as dg

from pipelines.defs.ingest.assets import LANDING, raw_events
from pipelines.defs.ingest.jobs import daily_ingest_schedule, ingest_job, landing_sensor

defs = dg.Definitions(
    assets=[LANDING, raw_events],
    jobs=[ingest_job],
    sensors=[landing_sensor],
    schedules=[daily_ingest_schedule],
)
