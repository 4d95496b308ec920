import dagster as dg

from pipelines.defs.curation.assets import splits

defs = dg.Definitions(assets=[splits])
