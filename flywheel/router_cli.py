"""The commands that ask whether the data pays off: `flywheel router train|evaluate|list`, `flywheel eval report`
and `flywheel replay` (registered on the app by flywheel/cli.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from flywheel.cli import HomeOption, app, console, report_table
from flywheel.settings import Home

router_app = typer.Typer(help="Train, evaluate and list routers (which model is good enough, and cheapest, for a "
                              "prompt), stored beside the releases.", no_args_is_help=True)
eval_app = typer.Typer(help="Score every model on a release's eval_items, and check how far the set can be "
                            "trusted.", no_args_is_help=True)
app.add_typer(router_app, name="router")
app.add_typer(eval_app, name="eval")


@router_app.command("train")
def router_train(
    release: Annotated[str, typer.Option(help="The router_examples release to learn from (v0003, 3, latest).")
                       ] = "latest",
    evaluate: Annotated[bool, typer.Option(help="Evaluate it on the release's test split afterwards.")] = True,
    home: HomeOption = None,
) -> None:
    """Fit a router on a router_examples release's train split (settings: schemas/router.yaml) and store it in
    FLYWHEEL_HOME/releases/routers/<release>-<digest>/."""
    from flywheel.router.store import train

    where = Home.from_env(home)
    trained = train(where.releases, release)
    model = trained.model
    console.print(f"router {trained.version} {'trained' if trained.new else 'already stored'}: "
                  f"{model.trained_on['prompts']:,} training prompts of router_examples {model.trained_on['release']}, "
                  f"{len(model.models)} models → {trained.folder}", soft_wrap=True)
    if evaluate:
        router_evaluate(trained.version, home=home)


@router_app.command("evaluate")
def router_evaluate(
    router: Annotated[str, typer.Argument(help="A router version (see `flywheel router list`) or latest.")
                      ] = "latest",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the interval of the gain.")] = 1000,
    home: HomeOption = None,
) -> None:
    """Score a router on its release's test split against every single model, random mixes and the oracle:
    the cost/quality curve, AIQ and its gain over the best mixes, APGR, CPT(50/80/95%); writes report.md,
    curve.png and evaluation.json beside it."""
    from flywheel.router.store import evaluate_router

    where = Home.from_env(home)
    folder, result = evaluate_router(where.releases, router, bootstrap=bootstrap)
    rows = [(name, f"{p['cost']:.6f}", f"{p['quality']:.3f}")
            for name, p in sorted(result.single.items(), key=lambda kv: kv[1]["cost"])]
    rows += [(f"router: {p['target']}", f"{p['cost']:.6f}", f"{p['quality']:.3f}") for p in result.operating_points]
    rows.append(("oracle", f"{result.oracle['cost']:.6f}", f"{result.oracle['quality']:.3f}"))
    console.print(report_table(f"router {result.router_version} on {result.prompts} test prompts",
                               ("model or setting", "mean cost (USD)", "quality"), rows))
    for key, value in result.summary().items():
        console.print(f"  {key}: {value if value is None or isinstance(value, int) else round(value, 4)}")
    console.print(f"report: {folder / 'report.md'}\nplot:   {folder / 'curve.png'}", soft_wrap=True)


@router_app.command("list")
def router_list(home: HomeOption = None) -> None:
    """Stored routers, oldest first, with what they learned from and their evaluation."""
    from flywheel.router.store import router_versions, routers_folder, stored_evaluation

    where = Home.from_env(home)
    versions = router_versions(where.releases)
    if not versions:
        console.print(f"no routers yet under {routers_folder(where.releases)}: run `flywheel router train`")
        return
    rows = []
    for version in versions:
        folder = routers_folder(where.releases) / version
        trained_on = json.loads((folder / "router.json").read_text())["trained_on"]
        evaluation = stored_evaluation(folder)
        gain = f"{evaluation['aiq_gain_over_hull']:+.4f}" if evaluation else "not evaluated"
        rows.append((version, trained_on["release"], f"{trained_on['prompts']:,}", gain))
    console.print(report_table("routers", ("router", "trained on", "prompts", "AIQ gain over best mix"), rows))


@eval_app.command("report")
def eval_report(
    release: Annotated[str, typer.Option(help="The eval_items release (v0003, 3, latest).")] = "latest",
    home: HomeOption = None,
) -> None:
    """Every model's accuracy on the eval items per app (95% bootstrap intervals), and the set's fidelity
    measured leave-one-model-out: mean absolute error and Spearman of the ranking against all logged outcomes."""
    from flywheel import eval_report as reporting

    where = Home.from_env(home)
    folder, document = reporting.build(where.releases, release)
    console.print(report_table(f"eval_items {document['eval_items']}: {document['items']} items",
                               ("app", "model", "items", "accuracy", "95% interval"),
                               [(s["app"], s["model"], s["items"], f"{s['accuracy']:.3f}",
                                 f"{s['low']:.3f} to {s['high']:.3f}") for s in document["scores"]], identifiers=2))
    console.print(report_table("fidelity (leave-one-model-out)", ("app", "prompts", "items", "mean abs. error",
                                                                   "Spearman"),
                               [(f["app"], f["prompts"], f"{f['items']:.0f}", f"{f['mae']:.4f}",
                                 f"{f['spearman']:.3f}") for f in document["fidelity"]]))
    console.print(f"report: {folder / 'report.md'}", soft_wrap=True)


@app.command()
def replay(
    settings: Annotated[str | None, typer.Option(help="Replay settings (default: schemas/replay.yaml).")] = None,
    prompts: Annotated[int | None, typer.Option(min=1, help="Prompt clusters this run (default: the settings').")
                       ] = None,
    budget: Annotated[float | None, typer.Option(min=0, help="Hard cap in USD (default: the settings' budget_usd).")
                      ] = None,
    dry_run: Annotated[bool, typer.Option(help="List what would be asked and its worst-case cost; call nothing.")
                       ] = False,
    home: HomeOption = None,
) -> None:
    """Ask the candidate models of schemas/replay.yaml the logged prompts they have not answered (a budgeted
    sample, spread over apps), grade the answers (a verifiable check, else the judge) and ingest them as
    interactions and outcomes marked source=replay, so the next release's router_examples knows every model.
    Calls are capped in USD, concurrent, retried on 429/5xx/timeouts and cached: nothing is paid for twice."""
    import os
    from pathlib import Path

    import msgspec

    from flywheel import warehouse
    from flywheel.replay.run import NothingToReplay, plan_replay, replay_into
    from flywheel.replay.settings import SETTINGS, load_settings

    where = Home.from_env(home).ensure()
    chosen = load_settings(Path(settings) if settings else SETTINGS)
    if budget is not None:
        chosen = msgspec.structs.replace(chosen, budget_usd=budget)
    with warehouse.session(where, on_wait=console.print) as con:
        try:
            plan = plan_replay(con, chosen, prompts)
        except NothingToReplay as error:
            console.print(f"[red]error:[/] {error}")
            raise typer.Exit(2) from error
        for name, known in plan.renamed.items():
            console.print(f"candidate {name} is {known} in the logs: its answers are stored as {known}")
        console.print(f"{len(plan.tasks):,} prompts, {plan.calls:,} answers missing; worst case "
                      f"${plan.worst_case_usd:.4f} (cap ${plan.settings.budget_usd:.2f})")
        if dry_run or not plan.tasks:
            return
        with _progress_with_spend() as bar:
            task = bar.add_task("replaying", total=plan.calls, spent=0.0)
            report = replay_into(con, plan, where, dict(os.environ),
                                 on_progress=lambda done, total, spent: bar.update(task, completed=done, spent=spent))
    console.print(f"asked {report.calls:,}, from cache {report.cached:,}, failed {report.failed:,}, over budget "
                  f"{report.over_budget:,}; graded {report.graded or 'none'}; spent ${report.spent_usd:.6f}")
    if report.events_file:
        console.print(f"stored as {report.events_file} and ingested; `flywheel publish` puts them in "
                      "router_examples", soft_wrap=True)


def _progress_with_spend():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("${task.fields[spent]:.4f}"), TimeElapsedColumn(), console=console)
