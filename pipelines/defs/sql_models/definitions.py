import dagster as dg

from pipelines.defs.sql_models.assets import model_prices, near_duplicate_clusters, sql_model_assets
from pipelines.defs.sql_models.jobs import daily_models_job, daily_models_schedule, touched_days_sensor

defs = dg.Definitions(
    assets=[model_prices, near_duplicate_clusters, *sql_model_assets],
    jobs=[daily_models_job],
    sensors=[touched_days_sensor],
    schedules=[daily_models_schedule],
)
