"""Reference tables the models join: the price of every model seen in the traffic."""

import hashlib

import dagster as dg

from flywheel.days import warehouse_watermark
from flywheel.reference import unpriced_models, write_model_prices
from flywheel.settings import SCHEMAS_DIR
from pipelines.builds import data_version
from pipelines.resources import WarehouseResource
from pipelines.shared import WAREHOUSE_POOL

PRICES_CODE_VERSION = hashlib.sha1((SCHEMAS_DIR / "prices.yaml").read_bytes()).hexdigest()[:12]


@dg.asset(
    key=["reference", "model_prices"],
    deps=[dg.AssetKey(["raw", "interactions"])],
    group_name="reference",
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    code_version=PRICES_CODE_VERSION,
    description="Every model name seen in the traffic, resolved against schemas/prices.yaml.",
)
def model_prices(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.session(context.log) as con:
        watermark = warehouse_watermark(con)
        counts = write_model_prices(con)
        unpriced = unpriced_models(con)
    if unpriced:
        context.log.warning(f"models without a price (add them to schemas/prices.yaml): {unpriced}")
    return dg.MaterializeResult(metadata={**counts, "unpriced_models": ", ".join(unpriced) or "none"},
                                data_version=data_version(watermark, PRICES_CODE_VERSION))
