"""The labeling loop as assets: what was queued in Argilla, and the labels that came back."""

import dagster as dg

from flywheel.labeling.loop import pull_all, queue_and_push
from flywheel.labeling.store import labels_summary, queue_summary, records_pushed
from pipelines.resources import ArgillaResource, WarehouseResource
from pipelines.shared import WAREHOUSE_POOL

CANDIDATES = dg.AssetKey(["intermediate", "int_labeling_candidates"])


@dg.asset(
    key=["labeling", "queue"],
    deps=[CANDIDATES],
    group_name="labeling",
    kinds={"duckdb", "argilla"},
    pool=WAREHOUSE_POOL,
    description="Samples this run's labeling budget (strategies in schemas/labeling/sampling.yaml, one "
                "representative per near-duplicate cluster, redacted text only) into labeling.queue and pushes "
                "everything not yet pushed to Argilla. Re-running pushes nothing twice.",
)
def labeling_queue(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                   argilla: ArgillaResource) -> dg.MaterializeResult:
    target = argilla.target(context.log)
    with warehouse.session(context.log) as con:
        report = queue_and_push(con, target, on_batch=lambda kind, done, total: context.log.info(
            f"{kind}: pushed {done}/{total}"))
        total, pushed, preview = queue_summary(con)
    metadata: dict = {"argilla_url": dg.MetadataValue.url(target.api_url), "queue_total": total,
                      "queue_pushed": pushed, "preview": dg.MetadataValue.md(preview)}
    for kind, sampled in report.sampled.items():
        metadata[f"{kind}/candidates"] = sampled.candidates
        metadata[f"{kind}/queued"] = sampled.queued
        metadata[f"{kind}/pushed"] = report.pushed[kind].pushed
        metadata[f"{kind}/by_strategy"] = dg.MetadataValue.json(sampled.queued_by_strategy)
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    key=["labeling", "labels"],
    deps=[dg.AssetKey(["labeling", "queue"])],
    group_name="labeling",
    kinds={"duckdb", "argilla"},
    pool=WAREHOUSE_POOL,
    description="Submitted and discarded Argilla responses in labeling.labels (one row per record and "
                "annotator, replaced when changed), annotator agreement, and low-agreement records sent back.",
)
def labeling_labels(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                    argilla: ArgillaResource) -> dg.MaterializeResult:
    with warehouse.session(context.log, read_only=True) as con:
        pushed = records_pushed(con)
    if not pushed:
        # Nothing was ever sent to Argilla: no server to start (the local one takes ~30 s) and nothing to pull.
        return dg.MaterializeResult(metadata={"labels_total": 0, "skipped": "nothing pushed to Argilla yet"})
    target = argilla.target(context.log)  # may start the local server: before the warehouse is held
    with warehouse.session(context.log) as con:
        report = pull_all(con, target)
        total, discarded, preview = labels_summary(con)
    metadata: dict = {"labels_total": total, "labels_discarded": discarded, "preview": dg.MetadataValue.md(preview)}
    for kind, pulled in report.pulled.items():
        progress = pulled.progress or {}
        metadata[f"{kind}/progress"] = dg.MetadataValue.json(progress)
        if progress.get("total"):
            metadata[f"{kind}/completed_pct"] = round(100.0 * progress.get("completed", 0) / progress["total"], 1)
        metadata[f"{kind}/new"] = pulled.new
        metadata[f"{kind}/changed"] = pulled.changed
        metadata[f"{kind}/unchanged"] = pulled.unchanged
        metadata[f"{kind}/agreement"] = dg.MetadataValue.json(pulled.agreement)
        metadata[f"{kind}/sent_back"] = pulled.requeued
    return dg.MaterializeResult(metadata=metadata)
