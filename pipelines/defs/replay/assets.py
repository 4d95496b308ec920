"""Counterfactual replay: the candidate models' answers to logged prompts they never saw, graded and ingested
back into the raw layer (flywheel.replay), so the next release's router_examples knows every model."""

import os
from pathlib import Path

import dagster as dg
import msgspec

from flywheel import reports
from pipelines.resources import WarehouseResource
from pipelines.shared import WAREHOUSE_POOL


class ReplayConfig(dg.Config):
    """Set in the launchpad; empty values take schemas/replay.yaml's."""

    settings: str = ""  # another replay settings file
    prompts: int = 0  # prompt clusters this run (0: the settings')
    budget_usd: float = -1.0  # hard cap in USD (negative: the settings' budget_usd)
    dry_run: bool = False  # plan only: what would be asked and its worst-case cost


@dg.asset(
    key=["replay", "answers"],
    deps=[dg.AssetKey(["marts", "router_examples"])],
    group_name="replay",
    kinds={"openai", "duckdb"},
    pool=WAREHOUSE_POOL,
    description="Asks the candidate models of schemas/replay.yaml the logged prompts they have not answered (a "
                "budgeted sample spread over apps), grades the answers (a verifiable check, else the judge) and "
                "ingests them as interactions and outcomes marked source=replay (a file under "
                "FLYWHEEL_HOME/landing/replay/). Spends money: it runs only when launched, under a hard USD cap; "
                "calls are cached, so nothing is paid for twice. API keys come from the environment variables the "
                "settings name.",
)
def answers(context: dg.AssetExecutionContext, config: ReplayConfig,
            warehouse: WarehouseResource) -> dg.MaterializeResult:
    from flywheel.replay.run import NothingToReplay, plan_replay, replay_into
    from flywheel.replay.settings import SETTINGS, load_settings

    layout = warehouse.layout
    chosen = load_settings(Path(config.settings) if config.settings else SETTINGS)
    if config.budget_usd >= 0:
        chosen = msgspec.structs.replace(chosen, budget_usd=config.budget_usd)
    with warehouse.session(context.log) as con:
        try:
            plan = plan_replay(con, chosen, config.prompts or None)
        except NothingToReplay as error:
            return dg.MaterializeResult(metadata={"replayed": False, "why": str(error)})
        planned = {"prompts": len(plan.tasks), "answers_missing": plan.calls,
                   "worst_case_usd": round(plan.worst_case_usd, 6), "cap_usd": plan.settings.budget_usd,
                   "candidates": ", ".join(c.name for c in plan.settings.candidates)}
        for name, known in plan.renamed.items():
            context.log.info(f"candidate {name} is {known} in the logs: its answers are stored as {known}")
        if config.dry_run or not plan.tasks:
            return dg.MaterializeResult(metadata={"replayed": False, **planned,
                                                  "why": "dry run" if config.dry_run else "nothing missing"})
        step = max(1, plan.calls // 20)

        def progress(done: int, total: int, spent: float) -> None:
            if done % step == 0 or done == total:
                context.log.info(f"replayed {done:,}/{total:,}, spent ${spent:.4f}")

        report = replay_into(con, plan, layout, dict(os.environ), on_progress=progress)
    graded = sorted(report.graded.items())
    return dg.MaterializeResult(metadata={
        "replayed": True, **planned, "asked": report.calls, "from_cache": report.cached, "failed": report.failed,
        "over_budget": report.over_budget, "spent_usd": round(report.spent_usd, 6),
        "graded": dg.MetadataValue.md(reports.markdown_table(("grade", "answers"), graded)),
        **({"events_file": dg.MetadataValue.path(str(report.events_file))} if report.events_file else {}),
    })
