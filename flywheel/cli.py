"""The library's commands: simulate, ingest, sql, schemas, argilla, label. No Dagster here: the commands that
run Dagster (run, build, dagster) are added to this app by pipelines/cli.py, which is the `flywheel` entry point."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flywheel import reports, warehouse
from flywheel.ingest.loader import DEFAULT_BATCH_LINES
from flywheel.settings import ENVIRONMENT, Home

app = typer.Typer(
    help="flywheel: turn production LLM traffic into curated fine-tuning, router and eval datasets.",
    epilog="Settings (environment): " + "; ".join(f"{name}: {what}" for name, what in ENVIRONMENT.items()),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
# The HTTP client and the Argilla SDK log every request (and the SDK draws tqdm bars); what a person needs to
# read is printed here. A root handler at WARNING now makes the SDK's own logging.basicConfig a no-op.
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
for _noisy in ("httpx", "argilla", "argilla.sdk", "great_expectations"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)
os.environ.setdefault("TQDM_DISABLE", "1")
HomeOption = Annotated[
    Path | None,
    typer.Option("--home", envvar="FLYWHEEL_HOME", help="State folder (warehouse, landing, Dagster home).",
                 show_default="./.flywheel"),
]


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def report_table(title: str, columns: tuple[str, ...], rows: list, identifiers: int = 1) -> Table:
    """A table whose first `identifiers` columns (file, app, model names) are never cut or wrapped: at a narrow
    width the other columns give way."""
    table = Table(title=title, box=box.SIMPLE_HEAD)  # no column rules: identifiers keep their width
    for n, column in enumerate(columns):
        if n < identifiers:
            widest = max([len(column), *(len(str(row[n])) for row in rows)])
            table.add_column(column, no_wrap=True, min_width=widest)
        else:  # headers stay whole; values wrap between words
            table.add_column(column, min_width=len(column))
    for row in rows:
        table.add_row(*(str(v) for v in row))
    return table


def _print_reports(file_reports: list) -> None:
    """A line per file: what this run read and stored from it. Soft-wrapped: file names are never cut."""
    for row, report in zip(reports.file_rows(file_reports), file_reports, strict=True):
        why = f" - [red]{report.error}[/]" if report.error else ""
        if not report.is_new:
            console.print(f"{row['file']}: {row['outcome']}, nothing new{why}", soft_wrap=True, highlight=False)
            continue
        console.print(f"{row['file']}: {row['outcome']} {row['lines_read']:,} lines ({row['format']}): "
                      f"{row['ingested']:,} stored, {row['quarantined']:,} quarantined, {row['duplicate']:,} "
                      f"duplicate, {row['blank']:,} blank" + ("" if report.reconciles else
                                                              " [red]- the counts do not reconcile[/]") + why,
                      soft_wrap=True, highlight=False)
    for warning in dict.fromkeys(w for report in file_reports if report.is_new for w in report.warnings):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    for report in file_reports:
        if not report.is_new:
            continue  # a file known before: its quarantined lines were named when it was ingested
        for example in report.quarantine_examples[:3]:
            console.print(f"[yellow]quarantined[/] {example}", highlight=False, soft_wrap=True)
        if report.resolved:
            console.print(f"[green]resolved[/] {report.resolved:,} quarantine rows of an earlier reading of "
                          f"{report.path} (with another mapping)", highlight=False, soft_wrap=True)
        if report.quarantine_rows > report.lines_quarantined:
            console.print(f"  ({report.quarantine_rows - report.lines_quarantined:,} of the stored lines had an "
                          "event that failed: the line's other events are stored)", highlight=False)
        if report.quarantine_rows > len(report.quarantine_examples[:3]):
            console.print(f"  … {report.quarantine_rows:,} quarantine rows in all: "
                          f"flywheel sql \"SELECT * FROM raw.quarantine WHERE file_hash = '{report.file_hash}'\"")


@app.command()
def simulate(
    rows: Annotated[int, typer.Option("--rows", "-n", help="Interactions to generate.")] = 10_000,
    days: Annotated[int, typer.Option(help="Spread timestamps over this many days up to now.")] = 7,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: from the clock).")] = None,
    malformed_rate: Annotated[float, typer.Option(help="Share of deliberately malformed lines.")] = 0.005,
    out: Annotated[Path | None, typer.Option(help="Output file (default: a new file in the landing folder).")] = None,
    home: HomeOption = None,
) -> None:
    """Write realistic multi-model traffic (with feedback and some malformed lines) as JSONL."""
    from flywheel.simulate import simulate as run_simulation

    seed = seed if seed is not None else int(datetime.now(UTC).timestamp())
    target = out or Home.from_env(home).ensure().landing / "simulated" / f"sim-{seed}-{rows}.jsonl"
    with _progress() as bar:
        task = bar.add_task(f"simulating {target.name}", total=rows)
        counts = run_simulation(target, rows, days=days, seed=seed, malformed_rate=malformed_rate,
                                progress=lambda n: bar.advance(task, n))
    console.print(f"wrote {target}: " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    print(target)


@app.command()
def ingest(
    paths: Annotated[list[Path] | None, typer.Argument(help="Files or folders (default: the landing folder).")] = None,
    mapping: Annotated[Path | None, typer.Option(help="YAML field mapping for a foreign export.")] = None,
    format: Annotated[str, typer.Option(help="auto, native or openai (ignored with --mapping).")] = "auto",
    batch_lines: Annotated[int, typer.Option(help="Lines per committed batch.")] = DEFAULT_BATCH_LINES,
    workers: Annotated[str, typer.Option(help="Validating processes: a number, or auto (2 for files > 64 MiB).")]
    = "auto",
    home: HomeOption = None,
) -> None:
    """Ingest files into the raw layer, exactly once; bad lines go to raw.quarantine with the reason."""
    from flywheel.ingest import MappingError, discover, ingest_file, load_mapping

    workers = workers if workers == "auto" else int(workers)
    where = Home.from_env(home).ensure()
    try:
        chosen = load_mapping(mapping) if mapping else None
        files = discover(list(paths) if paths else [where.landing])
    except (MappingError, FileNotFoundError) as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from error
    if not files:
        console.print(f"no input files under {where.landing}")
        return
    done = []
    with warehouse.session(where, on_wait=console.print) as con, _progress() as bar:
        for path in files:
            task = bar.add_task(f"ingesting {path.name}", total=None)  # lines counted as they are committed
            try:
                done.append(ingest_file(con, path, mapping=chosen, format_name=format, batch_lines=batch_lines,
                                        progress=lambda n, t=task: bar.advance(t, n), workers=workers))
            except MappingError as error:
                console.print(f"[red]error:[/] {error}")
                raise typer.Exit(2) from error
            bar.update(task, total=bar.tasks[task].completed)
    _print_reports(done)


@app.command()
def sql(
    query: Annotated[str | None, typer.Argument(help="A read-only SQL query (DuckDB dialect); none: a prompt.")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table, csv, json or parquet (to stdout)")] = "table",
    limit: Annotated[int, typer.Option(help="Rows to show in table output.")] = 50,
    allow_files: Annotated[bool, typer.Option("--allow-files", help="Let queries read files outside FLYWHEEL_HOME "
                                                                    "(read_csv, read_parquet, glob, ...).")] = False,
    home: HomeOption = None,
) -> None:
    """Query the warehouse read-only: the layers (raw, staging, intermediate, marts) and the published releases
    (releases.sft_examples, releases.router_examples_versions, ...), e.g.
    flywheel sql "SELECT app_id, cheapest_good_model, count(*) FROM releases.router_examples GROUP BY ALL".
    Without a query: an interactive prompt with history (end with an empty line or Ctrl-D). Only statements
    that read are run; files outside FLYWHEEL_HOME are out of reach unless --allow-files."""
    import duckdb

    if output not in ("table", "csv", "json", "parquet"):
        console.print(f"[red]error:[/] --output {output!r}: choose table, csv, json or parquet")
        raise typer.Exit(2)
    where = Home.from_env(home)
    try:
        with warehouse.query_session(where, allow_files=allow_files, on_wait=console.print) as con:
            if query is None:
                _sql_prompt(con, where, limit)
                return
            frame = warehouse.run_query(con, query).pl()
    except (duckdb.Error, FileNotFoundError, warehouse.RefusedStatement) as error:
        console.print(f"[red]error:[/] {_first_line(error)}")
        raise typer.Exit(2) from error
    _print_frame(frame, output, limit)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    if "file system operations are disabled" in line:
        line += " (files outside FLYWHEEL_HOME need --allow-files)"
    return line


def _print_frame(frame, output: str, limit: int) -> None:
    if output == "csv":
        sys.stdout.write(frame.write_csv())
    elif output == "json":
        sys.stdout.write(json.dumps(frame.to_dicts(), default=str, indent=1) + "\n")
    elif output == "parquet":
        sys.stdout.flush()
        frame.write_parquet(sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        import polars as pl

        with pl.Config(tbl_rows=limit, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=200):
            print(frame)


def _sql_prompt(con, where: Home, limit: int) -> None:
    """Read queries until an empty line or end of input; the history is kept in FLYWHEEL_HOME/.sql_history."""
    import duckdb

    try:
        import readline
    except ImportError:  # not on every platform: the prompt works without history
        readline = None
    history = where.root / ".sql_history"
    if readline is not None and history.exists():
        readline.read_history_file(history)
    console.print("flywheel sql: one query per line (tables: SHOW ALL TABLES); an empty line ends")
    try:
        while True:
            try:
                line = input("flywheel> ").strip()
            except EOFError:
                break
            if not line:
                break
            try:
                _print_frame(warehouse.run_query(con, line).pl(), "table", limit)
            except (duckdb.Error, warehouse.RefusedStatement) as error:
                console.print(f"[red]error:[/] {_first_line(error)}")
    finally:
        if readline is not None:
            readline.write_history_file(history)


@app.command()
def schemas(
    write: Annotated[bool, typer.Option("--write", help="Regenerate schemas/*.schema.json.")] = False,
) -> None:
    """Print (or write) the JSON Schemas of the interaction and feedback contracts."""
    from flywheel.contracts import json_schemas
    from flywheel.settings import SCHEMAS_DIR

    for name, schema in json_schemas().items():
        text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
        if write:
            (SCHEMAS_DIR / f"{name}.schema.json").write_text(text)
            console.print(f"wrote schemas/{name}.schema.json")
        else:
            print(text)


argilla_app = typer.Typer(help="The local Argilla server (labeling UI) under FLYWHEEL_HOME/argilla.",
                          no_args_is_help=True)
label_app = typer.Typer(help="The labeling loop: queue samples in Argilla, pull the labels back.", no_args_is_help=True)
app.add_typer(argilla_app, name="argilla")
app.add_typer(label_app, name="label")
PortOption = Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default 6900 or FLYWHEEL_ARGILLA_PORT).")]


@argilla_app.command("up")
def argilla_up(port: PortOption = None, home: HomeOption = None) -> None:
    """Start a real Argilla server (own virtual environment, SQLite, embedded Redis, no Elasticsearch)."""
    from flywheel.labeling.server import ArgillaServerError, LocalArgilla

    server = LocalArgilla(Home.from_env(home).ensure(), port=port)
    try:
        state, credentials, new = server.up(say=console.print)
    except ArgillaServerError as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(1) from error
    console.print(f"Argilla UI: {state.url}  (pid {state.pid}, log {state.log})")
    if new:
        # Printed once, now; afterwards only the file holds them.
        console.print(f"  username: {credentials.username}\n  password: {credentials.password}\n"
                      f"  API key:  {credentials.api_key}")
    console.print(f"  credentials: {server.credentials_file} (owner-only)")


@argilla_app.command("down")
def argilla_down(home: HomeOption = None) -> None:
    """Stop the local Argilla server; its data stays under FLYWHEEL_HOME/argilla/data."""
    from flywheel.labeling.server import LocalArgilla

    stopped = LocalArgilla(Home.from_env(home)).down()
    console.print("Argilla stopped" if stopped else "Argilla was not running")


@argilla_app.command("status")
def argilla_status(home: HomeOption = None) -> None:
    """Is the labeling server up, where, and how far has labeling got per dataset?"""
    from flywheel.labeling.client import ArgillaUnavailable, resolve_target
    from flywheel.labeling.loop import specs
    from flywheel.labeling.sync import dataset_for

    where = Home.from_env(home)
    try:
        target = resolve_target(where)
    except ArgillaUnavailable as error:
        console.print(f"not running: {error}")
        raise typer.Exit(3) from error
    if not target.reachable():
        console.print(f"[red]not reachable:[/] {target.api_url}")
        raise typer.Exit(3)
    console.print(f"Argilla {'(local)' if target.local else '(remote)'}: {target.api_url}, "
                  f"workspace {target.workspace}")
    client = target.client()
    for spec in specs().values():
        dataset = dataset_for(target, spec, client=client, create=False)
        if dataset is None:
            console.print(f"  {spec.name}: not created yet (flywheel label queue)")
            continue
        progress = dict(dataset.progress())
        console.print(f"  {spec.name}: {progress.get('total', 0):,} records, {progress.get('completed', 0):,} "
                      f"completed, {progress.get('pending', 0):,} pending")


def _target(where: Home, start_local: bool):
    from flywheel.labeling.client import ArgillaUnavailable, resolve_target
    from flywheel.labeling.server import ArgillaServerError

    try:
        return resolve_target(where, start_local=start_local, say=console.print)
    except (ArgillaUnavailable, ArgillaServerError) as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(3) from error


@label_app.command("queue")
def label_queue(
    budget: Annotated[int | None, typer.Option(help="Response-review records this run (default: sampling.yaml).")]
    = None,
    pairs: Annotated[int | None, typer.Option(help="Pairwise records this run (default: sampling.yaml).")] = None,
    home: HomeOption = None,
) -> None:
    """Sample interactions for labeling (strategies and budget in schemas/labeling/sampling.yaml), push to Argilla."""
    from flywheel.labeling.client import ArgillaUnavailable
    from flywheel.labeling.loop import queue_and_push

    where = Home.from_env(home).ensure()
    target = _target(where, start_local=True)
    budgets = {k: v for k, v in {"response_review": budget, "pairwise": pairs}.items() if v is not None}
    with warehouse.session(where, on_wait=console.print) as con, _progress() as bar:
        tasks: dict[str, int] = {}

        def advance(kind: str, done: int, total: int) -> None:
            if kind not in tasks:
                tasks[kind] = bar.add_task(f"pushing {kind}", total=total)
            bar.update(tasks[kind], completed=done)

        try:
            report = queue_and_push(con, target, budgets=budgets, on_batch=advance)
        except ArgillaUnavailable as error:
            console.print(f"[red]error:[/] {error}")
            raise typer.Exit(3) from error
    for kind, sampled in report.sampled.items():
        if not sampled.budget:
            console.print(f"{kind}: today's budget is queued already (--budget N queues more now); "
                          f"pushed {report.pushed[kind].pushed}")
            continue
        console.print(f"{kind}: queued {sampled.queued} of budget {sampled.budget} from {sampled.candidates:,} "
                      f"candidates {sampled.queued_by_strategy}; pushed {report.pushed[kind].pushed}")
    console.print(f"label them at {target.api_url}")


@label_app.command("pull")
def label_pull(home: HomeOption = None) -> None:
    """Pull submitted and discarded responses into labeling.labels (exactly once), with annotator agreement."""
    from flywheel.labeling.client import ArgillaUnavailable
    from flywheel.labeling.loop import pull_all

    where = Home.from_env(home).ensure()
    target = _target(where, start_local=False)
    with warehouse.session(where, on_wait=console.print) as con:
        try:
            report = pull_all(con, target)
        except ArgillaUnavailable as error:
            console.print(f"[red]error:[/] {error}")
            raise typer.Exit(3) from error
    for kind, pulled in report.pulled.items():
        console.print(f"{kind}: new {pulled.new}, changed {pulled.changed}, unchanged {pulled.unchanged}, "
                      f"drafts skipped {pulled.drafts_skipped}; progress {pulled.progress}; "
                      f"agreement {pulled.agreement or 'n/a'}; sent back {pulled.requeued}")


DEBUG_FLAG = "--debug"


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option(DEBUG_FLAG, help="Show the full traceback of an error.")] = False,
) -> None:
    """flywheel: turn production LLM traffic into curated fine-tuning, router and eval datasets."""


def run_app(application: typer.Typer = app) -> None:
    """Run the commands; an error they did not handle prints as one line (what went wrong, and that --debug
    shows the traceback) and exits 1, never as a traceback."""
    debug = DEBUG_FLAG in sys.argv[1:]
    try:
        application(standalone_mode=True)
    except KeyboardInterrupt:
        console.print("interrupted")
        raise SystemExit(130) from None
    except Exception as error:
        if debug:
            raise
        console.print(f"[red]error:[/] {type(error).__name__}: {_first_line(error)} (run again with --debug for "
                      "the traceback)", soft_wrap=True)
        raise SystemExit(1) from None




releases_app = typer.Typer(help="The published releases under FLYWHEEL_HOME/releases.", no_args_is_help=True)
app.add_typer(releases_app, name="releases")


@releases_app.command("list")
def releases_list(home: HomeOption = None) -> None:
    """Every release of every dataset, newest last; * marks the latest."""
    from flywheel.releases import listing

    where = Home.from_env(home)
    rows = [(name, version + (" *" if latest else ""), created, f"{total:,}")
            for name, version, created, total, latest in listing(where.releases)]
    if not rows:
        console.print(f"no releases yet under {where.releases}: run `flywheel publish`")
        return
    console.print(report_table(f"releases in {where.releases}", ("dataset", "version", "created", "rows"), rows))


@releases_app.command("show")
def releases_show(
    dataset: Annotated[str, typer.Argument(help="sft_examples, preference_pairs, router_examples, eval_items, "
                                                "curated_interactions")],
    version: Annotated[str, typer.Argument(help="v0003, 3 or latest")] = "latest",
    home: HomeOption = None,
) -> None:
    """A release's manifest (rows, files, what it was built from) and where its files are."""
    from flywheel.publish import dataset_folder, manifest
    from flywheel.releases import resolve

    where = Home.from_env(home)
    name = _release_version(resolve, where, dataset, version)
    document = manifest(where.releases, dataset, name)
    console.print(f"{dataset} {name}: {dataset_folder(where.releases, dataset) / name}", soft_wrap=True)
    print(json.dumps({k: v for k, v in document.items() if k != "files"}, indent=2))
    console.print(report_table("files", ("file", "bytes", "sha256"),
                               [(f, f"{m['bytes']:,}", m["sha256"][:16]) for f, m in document["files"].items()]))


@releases_app.command("diff")
def releases_diff(
    dataset: Annotated[str, typer.Argument(help="The dataset, e.g. sft_examples")],
    old: Annotated[str, typer.Argument(help="The older version (v0001, 1)")],
    new: Annotated[str, typer.Argument(help="The newer version (default: latest)")] = "latest",
    home: HomeOption = None,
) -> None:
    """Rows added, removed and changed per split between two releases (rows matched by the dataset's key)."""
    from flywheel.releases import diff, resolve

    where = Home.from_env(home)
    a, b = (_release_version(resolve, where, dataset, v) for v in (old, new))
    rows = [(d.split, f"{d.added:,}", f"{d.removed:,}", f"{d.changed:,}", f"{d.unchanged:,}")
            for d in diff(where.releases, dataset, a, b)]
    console.print(report_table(f"{dataset} {a} → {b}", ("split", "added", "removed", "changed", "unchanged"), rows))


def _release_version(resolve, where: Home, dataset: str, version: str) -> str:
    from flywheel.publish import DATASETS

    if dataset not in DATASETS:
        console.print(f"[red]error:[/] no dataset {dataset!r}; the datasets are {', '.join(DATASETS)}")
        raise typer.Exit(2)
    try:
        return resolve(where.releases, dataset, version)
    except (LookupError, ValueError) as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from error


from flywheel import router_cli  # noqa: E402,F401  (registers `router`, `eval` and `replay` on the app)

if __name__ == "__main__":
    run_app()
