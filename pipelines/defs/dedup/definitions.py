import dagster as dg

from pipelines.defs.dedup.assets import near_duplicate_clusters

defs = dg.Definitions(assets=[near_duplicate_clusters])
