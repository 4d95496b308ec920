"""One release asset per curated dataset: publishes the mart as an immutable, versioned release (flywheel.publish)
and refreshes the `releases.*` SQL views over them."""

import dagster as dg

from flywheel import reports
from flywheel.publish import CODE_VERSION, DATASETS, inputs_stamp, publish, remove_incomplete
from flywheel.releases import refresh_views
from pipelines.resources import WarehouseResource
from pipelines.shared import WAREHOUSE_POOL


def _release_asset(name: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=["releases", name],
        deps=[dg.AssetKey(["marts", name])],
        group_name="releases",
        kinds={"parquet", "duckdb"},
        pool=WAREHOUSE_POOL,
        code_version=CODE_VERSION,
        description=f"Releases of marts.{name} under FLYWHEEL_HOME/releases/{name}/<version>/ (Parquet per split, "
                    "manifest, dataset card; `latest` points to the newest); query them as "
                    f"releases.{name} and releases.{name}_versions. Nothing new to publish makes no version.",
    )
    def release(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        releases = warehouse.layout.releases
        with warehouse.session(context.log) as con:
            if remove_incomplete(releases):
                context.log.warning("removed a release left half-written by a stopped run (it was never visible)")
            stamp = inputs_stamp(con)
            result = publish(con, releases, name, on_step=context.log.info)
            refresh_views(con, releases)
        if result.version is None:
            return dg.MaterializeResult(metadata={"published": False, "latest": result.unchanged_since or "",
                                                  "why": result.why}, data_version=dg.DataVersion(stamp))
        rows = sorted(result.rows.items())
        return dg.MaterializeResult(metadata={
            "published": True, "version": result.version, "path": dg.MetadataValue.path(str(result.path)),
            "rows_total": sum(result.rows.values()), **{f"rows_{split}": n for split, n in rows},
            "bytes": result.bytes, "rows": dg.MetadataValue.md(reports.markdown_table(("split", "rows"), rows)),
        }, data_version=dg.DataVersion(stamp))

    return release


release_assets = [_release_asset(name) for name in DATASETS]


@dg.asset(
    key=["releases", "router"],
    deps=[dg.AssetKey(["releases", "router_examples"])],
    group_name="releases",
    kinds={"numpy", "python"},
    pool=WAREHOUSE_POOL,
    code_version=CODE_VERSION,
    description="A router trained on the latest router_examples release's train split and scored on its test "
                "split (flywheel/router/, settings in schemas/router.yaml), stored under "
                "FLYWHEEL_HOME/releases/routers/<release>-<digest>/ with its report and cost/quality plot. "
                "Production code loads it with flywheel.route.Router.load().",
)
def router(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    from flywheel.router.store import evaluate_router, train

    releases = warehouse.layout.releases
    try:
        trained = train(releases)
    except Exception as error:  # no release yet, too few prompts: the releases stand without a router
        context.log.warning(f"no router trained: {type(error).__name__}: {error}")
        return dg.MaterializeResult(metadata={"trained": False, "why": f"{type(error).__name__}: {error}"})
    metadata = {"trained": True, "router_version": trained.version, "new": trained.new,
                "path": dg.MetadataValue.path(str(trained.folder)),
                "training_prompts": trained.model.trained_on["prompts"], "models": len(trained.model.models)}
    try:
        folder, result = evaluate_router(releases, trained.version)
    except Exception as error:  # e.g. a test split without every model's outcome: replay first
        return dg.MaterializeResult(metadata={**metadata, "evaluated": False, "why": str(error)})
    summary = {k: v for k, v in result.summary().items() if v is not None}
    return dg.MaterializeResult(metadata={
        **metadata, "evaluated": True, **summary,
        "report": dg.MetadataValue.md((folder / "report.md").read_text().replace("![cost/quality curve](curve.png)",
                                                                                  "")),
        "plot": dg.MetadataValue.path(str(folder / "curve.png")),
    })
