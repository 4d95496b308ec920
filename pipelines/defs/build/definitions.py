import dagster as dg

from pipelines.defs.build.jobs import build_job, build_sensor

defs = dg.Definitions(jobs=[build_job], sensors=[build_sensor])
