import dagster as dg

from pipelines.defs.sql_models.jobs import BUILD_ASSETS, build_job, build_sensor

defs = dg.Definitions(
    assets=BUILD_ASSETS,
    jobs=[build_job],
    sensors=[build_sensor],
)
