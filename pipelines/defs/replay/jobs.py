"""Replay runs only when someone launches it with a budget: no schedule spends money by default."""

import dagster as dg

from pipelines.shared import WAREHOUSE_WRITE_TAGS

replay_job = dg.define_asset_job(
    "replay_job",
    selection=dg.AssetSelection.assets(dg.AssetKey(["replay", "answers"])),
    description="Ask the candidate models the logged prompts they have not answered, under the hard USD cap of "
                "schemas/replay.yaml (or the launchpad's budget_usd), and ingest the graded answers. The next "
                "publish trains the router on them.",
    tags=WAREHOUSE_WRITE_TAGS,
    executor_def=dg.in_process_executor,
)
