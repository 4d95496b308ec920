"""The `flywheel` command: the library's commands (flywheel/cli.py) and those that run Dagster."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer

from flywheel import reports, warehouse
from flywheel.cli import HomeOption, app, console, report_table, run_app, simulate
from flywheel.settings import Home


@app.command()
def run(
    rows: Annotated[int, typer.Option("--rows", "-n", help="Simulated interactions to add first (0: none).")] = 20_000,
    labeling: Annotated[bool, typer.Option(help="Queue samples in Argilla (the local server unless ARGILLA_API_URL "
                                                "and ARGILLA_API_KEY are set) and pull labels.")] = True,
    home: HomeOption = None,
) -> None:
    """The main job on embedded defaults: simulate traffic into the landing folder, then materialize the
    flywheel in Dagster (recorded in FLYWHEEL_HOME/dagster, visible in `flywheel dagster`): ingest, every day
    that needs building (however its data came in), and the labeling queue in Argilla."""
    from pipelines.launch import run_main_job

    where = Home.from_env(home).ensure()
    if rows:
        simulate(rows=rows, days=7, seed=None, malformed_rate=0.005, out=None, home=where.root)
    console.print("running the flywheel in Dagster: ingest, then every day that needs building …")
    result = run_main_job(where, on_run=console.print, labeling=labeling)
    if not result.success:
        console.print("[red]a Dagster run failed[/]; `flywheel dagster` shows its logs")
        raise typer.Exit(1)
    if not warehouse.exists(where):
        console.print(f"nothing ingested yet: put log files in {where.landing} or run `flywheel ingest FILES`")
        return
    with warehouse.session(where, read_only=True, on_wait=console.print) as con:
        counts = reports.raw_counts(con)
        table = report_table(f"intermediate.int_interactions in {where.warehouse}",
                       ("app", "model", "calls", "avg ms", "cost $", "rated", "score"),
                       reports.per_app_and_model(con), identifiers=2)
        redacted, clusters = reports.redaction_totals(con), reports.cluster_count(con)
    console.print(table)
    console.print(", ".join(f"{k}: {v:,}" for k, v in counts.items()) + f", near-duplicate clusters: {clusters:,}")
    console.print("redacted before leaving raw: " + (", ".join(f"{k} {n:,}" for k, n in redacted) or "nothing"))
    if labeling:
        _print_labeling(where)
    print_releases(where)
    console.print(f"{len(result.runs)} Dagster run(s) succeeded. The Dagster UI: `flywheel dagster` "
                  "(http://127.0.0.1:3000). Query the releases:")
    for example in ('SELECT app_id, cheapest_good_model, count(*) FROM releases.router_examples '
                    'GROUP BY ALL ORDER BY ALL',
                    "SELECT quality_source, count(*), round(avg(quality_score), 2) FROM releases.curated_interactions "
                    "GROUP BY 1",
                    "SELECT version, split, count(*) FROM releases.sft_examples_versions GROUP BY ALL ORDER BY ALL"):
        console.print(f'  flywheel sql "{example}"', soft_wrap=True)


@app.command()
def publish(home: HomeOption = None) -> None:
    """Publish a release of each curated dataset whose rows changed: builds what needs building, rebuilds the
    quality signals, splits and marts, validates them, and writes FLYWHEEL_HOME/releases/<dataset>/<version>/
    (Parquet per split, OpenAI JSONL, manifest, dataset card) in one Dagster run."""
    from pipelines.launch import publish as publish_releases

    where = Home.from_env(home).ensure()
    if not warehouse.exists(where):
        console.print(f"nothing ingested yet: put log files in {where.landing} or run `flywheel ingest FILES`")
        raise typer.Exit(1)
    result = publish_releases(where, say=console.print)
    if not result.success:
        console.print("[red]publishing failed[/]; nothing half-written is visible. `flywheel dagster` shows the "
                      "run's logs")
        raise typer.Exit(1)
    print_releases(where)


def print_releases(where: Home) -> None:
    from flywheel.publish import DATASETS, latest_version, manifest

    rows = []
    for name in DATASETS:
        version = latest_version(where.releases, name)
        if version:
            document = manifest(where.releases, name, version)
            size = sum(f["bytes"] for f in document["files"].values())
            rows.append((name, version, *(f"{document['rows'][s]:,}" for s in ("train", "validation", "test")),
                         f"{size / 1e6:.1f} MB"))
    if rows:
        console.print(report_table(f"releases in {where.releases} (latest of each)",
                                   ("dataset", "version", "train", "validation", "test", "size"), rows))


def _print_labeling(where: Home) -> None:
    from flywheel.labeling.client import remote_target
    from flywheel.labeling.server import LocalArgilla
    from flywheel.labeling.store import queued_by_kind

    with warehouse.session(where, read_only=True, on_wait=console.print) as con:
        queued = queued_by_kind(con)
    console.print("in Argilla: " + ", ".join(f"{kind} {pushed:,} of {n:,} queued" for kind, n, pushed in queued))
    remote = remote_target(where)
    if remote is not None:
        console.print(f"label at {remote.api_url}")
        return
    server = LocalArgilla(where)
    state, credentials = server.state(), server.credentials()
    if state and credentials:
        console.print(f"label at {state.url} as {credentials.username} (password in {server.credentials_file}); "
                      "stop it with `flywheel argilla down`")


def _day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError as error:
        console.print(f"[red]error:[/] {option} {value!r}: not a date (YYYY-MM-DD)")
        raise typer.Exit(2) from error


@app.command()
def build(
    days: Annotated[str | None, typer.Option(help="Only these days, comma-separated (YYYY-MM-DD,...), rebuilt "
                                                  "whether they need it or not.")] = None,
    since: Annotated[str | None, typer.Option(help="Only days on or after this one (YYYY-MM-DD).")] = None,
    until: Annotated[str | None, typer.Option(help="Only days on or before this one (YYYY-MM-DD).")] = None,
    all_days: Annotated[bool, typer.Option("--all", help="Rebuild every day (within --since/--until), not only "
                                                         "those whose data changed.")] = False,
    home: HomeOption = None,
) -> None:
    """Build the models (staging, quality checks, near-duplicates, intermediate) for every day whose data is new
    or changed, however it was ingested; a range of days is one Dagster run, visible in `flywheel dagster`."""
    from pipelines.launch import build as build_days

    only = [_day(d, "--days") for d in days.split(",") if d.strip()] if days else None
    first = _day(since, "--since") if since else None
    last = _day(until, "--until") if until else None
    where = Home.from_env(home).ensure()
    result = build_days(where, only=only, since=first, until=last, everything=all_days or only is not None,
                        say=console.print)
    if not result.success:
        console.print("[red]the build failed[/]; `flywheel dagster` shows its logs")
        raise typer.Exit(1)
    if result.days_with_data == 0:
        console.print(f"no data yet: put log files in {where.landing} or run `flywheel ingest FILES`")
    elif result.runs:
        console.print(f"built {result.days_built} of {result.days_with_data} day(s) with data "
                      f"in {len(result.runs)} Dagster run(s)")


ProfileOption = Annotated[str | None, typer.Option(
    help="embedded (one DuckDB file, Dagster on SQLite) or scale (DuckLake and Dagster on PostgreSQL, steps on "
         "Celery workers); default FLYWHEEL_PROFILE, else embedded.")]


@app.command()
def dagster(
    port: Annotated[int, typer.Option(help="Port for the Dagster UI (bound to 127.0.0.1).")] = 3000,
    profile: ProfileOption = None,
    home: HomeOption = None,
) -> None:
    """Start the Dagster UI and daemon (sensors on the landing folder and the days to build, schedules) on
    127.0.0.1. With --profile scale, runs and events are kept in PostgreSQL and steps go to `flywheel worker`s."""
    from pipelines.launch import serve

    raise typer.Exit(serve(_home(home, profile), port))


@app.command()
def worker(
    name: Annotated[str | None, typer.Option(help="This worker's name (default: worker-<pid>).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Steps this worker runs at once.")] = 1,
    loglevel: Annotated[str, typer.Option(help="Celery's log level: INFO lists every step it runs.")] = "WARNING",
    home: HomeOption = None,
) -> None:
    """Run Dagster's steps for the scale profile: a Celery worker on FLYWHEEL_BROKER_URL that writes the lake
    (FLYWHEEL_POSTGRES_URL, FLYWHEEL_LAKE_DATA). Start one or more on any machine that reaches them; Ctrl-C stops
    it after its current step."""
    import os

    from flywheel.processes import supervise
    from pipelines.scale import worker_process

    where = _home(home, "scale")
    console.print(f"worker on {where.scale.broker_url}, lake {where.lake_data} (catalog schema "
                  f"{where.scale.lake_schema}); Ctrl-C to stop", soft_wrap=True)
    raise typer.Exit(supervise(worker_process(where, name=name or f"worker-{os.getpid()}",
                                              concurrency=concurrency, loglevel=loglevel.upper())))


def _home(home: str | None, profile: str | None) -> Home:
    try:
        return Home.from_env(home, profile=profile).ensure()
    except ValueError as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None


def main() -> None:
    """The `flywheel` command (pyproject's entry point)."""
    run_app(app)


if __name__ == "__main__":
    main()
