import dagster as dg

from pipelines.defs.sql_models.assets import sql_model_assets

defs = dg.Definitions(assets=sql_model_assets)
