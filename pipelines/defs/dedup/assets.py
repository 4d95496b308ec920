"""Near-duplicate clusters of prompts, over every day at once."""

import hashlib

import dagster as dg

from flywheel import reports
from flywheel.days import warehouse_watermark
from flywheel.dedup import DedupConfig, MinHasher, build_clusters
from pipelines.builds import data_version
from pipelines.resources import WarehouseResource
from pipelines.shared import WAREHOUSE_POOL

DEDUP_CODE_VERSION = hashlib.sha1(repr(DedupConfig()).encode()).hexdigest()[:12]


@dg.asset(
    key=["dedup", "clusters"],
    deps=[dg.AssetKey(["staging", "stg_interactions"])],
    group_name="dedup",
    kinds={"duckdb", "python"},
    pool=WAREHOUSE_POOL,
    code_version=DEDUP_CODE_VERSION,
    description="Near-duplicate clusters of prompts (MinHash + LSH) over every day at once, so they do not "
                "depend on the order days were built in; cluster_id is the request_id of the cluster's "
                "earliest member.",
)
def near_duplicate_clusters(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.session(context.log) as con:
        watermark = warehouse_watermark(con)
        result = build_clusters(con, MinHasher(DedupConfig()))
        largest = reports.preview(con, """SELECT cluster_id, count(*) AS members FROM dedup.clusters
                                          GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5""")
    return dg.MaterializeResult(
        metadata={
            "interactions": result.interactions, "distinct_prompts": result.distinct_prompts,
            "clusters": result.clusters, "clusters_with_several_members": result.multi_member_clusters,
            "largest_clusters": dg.MetadataValue.md(largest),
        },
        data_version=data_version(watermark, DEDUP_CODE_VERSION),
    )
