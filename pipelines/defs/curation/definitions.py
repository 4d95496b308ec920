import dagster as dg

from pipelines.defs.curation.assets import eval_selection, splits

defs = dg.Definitions(assets=[eval_selection, splits])
