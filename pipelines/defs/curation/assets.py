"""The split of every clustered interaction (train, validation, test), remembered across builds and releases, and
which held-out prompts make the eval set."""

import hashlib

import dagster as dg

from flywheel import reports
from flywheel.curation import RULES_PATH, assign_splits, choose_eval_items, load_rules
from flywheel.days import warehouse_watermark
from pipelines.builds import data_version
from pipelines.resources import WarehouseResource
from pipelines.shared import WAREHOUSE_POOL

SPLITS_CODE_VERSION = hashlib.sha1(RULES_PATH.read_bytes()).hexdigest()[:12]


@dg.asset(
    key=["curation", "splits"],
    deps=[dg.AssetKey(["dedup", "clusters"])],
    group_name="curation",
    kinds={"duckdb", "python"},
    pool=WAREHOUSE_POOL,
    code_version=SPLITS_CODE_VERSION,
    description="Each clustered interaction's split (shares from schemas/curation.yaml). A cluster's members share "
                "one; a held-out cluster (validation, test) never moves to train, even when clusters merge.",
)
def splits(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.session(context.log) as con:
        watermark = warehouse_watermark(con)
        counts = assign_splits(con, load_rules())
        table = reports.markdown_table(("split", "interactions"), sorted(counts.items()))
    return dg.MaterializeResult(
        metadata={**{f"{split}_interactions": n for split, n in counts.items()}, "splits": dg.MetadataValue.md(table)},
        data_version=data_version(watermark, SPLITS_CODE_VERSION),
    )


@dg.asset(
    key=["curation", "eval_selection"],
    deps=[dg.AssetKey(["marts", "router_examples"])],
    group_name="curation",
    kinds={"duckdb", "python"},
    pool=WAREHOUSE_POOL,
    code_version=SPLITS_CODE_VERSION,
    description="Which held-out prompts make the eval set, and how much each stands for (schemas/curation.yaml "
                "eval:, flywheel/evalsets.py): per app, a share of its prompts stratified by difficulty.",
)
def eval_selection(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.session(context.log) as con:
        watermark = warehouse_watermark(con)
        counts = choose_eval_items(con, load_rules())
        table = reports.markdown_table(("app", "items"), sorted(counts.items()))
    return dg.MaterializeResult(
        metadata={"items": sum(counts.values()), "apps": len(counts), "per_app": dg.MetadataValue.md(table)},
        data_version=data_version(watermark, SPLITS_CODE_VERSION),
    )
