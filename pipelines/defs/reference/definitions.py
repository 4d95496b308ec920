import dagster as dg

from pipelines.defs.reference.assets import model_prices

defs = dg.Definitions(assets=[model_prices])
