"""The `flywheel` command line."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flywheel import reports, warehouse
from flywheel.ingest.loader import DEFAULT_BATCH_LINES
from flywheel.settings import Home

app = typer.Typer(
    help="flywheel: turn production LLM traffic into curated fine-tuning, router and eval datasets.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
HomeOption = Annotated[
    Path | None,
    typer.Option("--home", envvar="FLYWHEEL_HOME", help="State folder (warehouse, landing, Dagster home).",
                 show_default="./.flywheel"),
]


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def _print_reports(file_reports: list) -> None:
    table = Table(title="ingested files", show_lines=False)
    for column in reports.FILE_COLUMNS:
        table.add_column(column, overflow="fold")
    for row in reports.file_rows(file_reports):
        row["file"] = Path(row["file"]).name
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)
    for report in file_reports:
        for example in report.quarantine_examples[:3]:
            console.print(f"[yellow]quarantined[/] {example}", highlight=False)
        if report.lines_quarantined > len(report.quarantine_examples[:3]):
            console.print(f"  … {report.lines_quarantined} quarantined lines in all: "
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
    with warehouse.session(where.warehouse, on_wait=console.print) as con, _progress() as bar:
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
def run(
    rows: Annotated[int, typer.Option("--rows", "-n", help="Simulated interactions to add first (0: none).")] = 20_000,
    home: HomeOption = None,
) -> None:
    """The main job on embedded defaults: simulate traffic into the landing folder, then materialize the
    flywheel job in Dagster (recorded in FLYWHEEL_HOME/dagster, visible in `flywheel dagster`)."""
    from pipelines.launch import run_main_job

    where = Home.from_env(home).ensure()
    if rows:
        simulate(rows=rows, days=7, seed=None, malformed_rate=0.005, out=None, home=where.root)
    console.print("running the flywheel in Dagster: ingest, then the SQL models of each day touched …")
    result = run_main_job(where, on_run=console.print)
    if not result.success:
        console.print("[red]a Dagster run failed[/]; `flywheel dagster` shows its logs")
        raise typer.Exit(1)
    with warehouse.session(where.warehouse, read_only=True, on_wait=console.print) as con:
        counts = reports.raw_counts(con)
        table = Table(title=f"intermediate.int_interactions in {where.warehouse}")
        for column in ("app", "model", "calls", "avg latency ms", "cost $", "feedback", "score"):
            table.add_column(column)
        for row in reports.per_app_and_model(con):
            table.add_row(*(str(v) for v in row))
        redacted = con.execute("SELECT kind, sum(redactions)::BIGINT FROM staging.stg_redactions GROUP BY 1 "
                               "ORDER BY 2 DESC").fetchall()
        clusters = con.execute("SELECT count(DISTINCT cluster_id) FROM dedup.clusters").fetchall()[0][0]
    console.print(table)
    console.print(", ".join(f"{k}: {v:,}" for k, v in counts.items()) + f", near-duplicate clusters: {clusters:,}")
    console.print("redacted before leaving raw: " + (", ".join(f"{k} {n:,}" for k, n in redacted) or "nothing"))
    console.print(f"{len(result.runs)} Dagster run(s) succeeded. Next: flywheel sql \"SELECT ...\", flywheel dagster")


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="A read-only SQL query (DuckDB dialect).")],
    output: Annotated[str, typer.Option("--output", "-o", help="table, csv or json")] = "table",
    limit: Annotated[int, typer.Option(help="Rows to show in table output.")] = 50,
    home: HomeOption = None,
) -> None:
    """Query the warehouse read-only, e.g. flywheel sql "SELECT model, count(*) FROM raw.interactions GROUP BY 1"."""
    import duckdb

    where = Home.from_env(home)
    try:
        with warehouse.session(where.warehouse, read_only=True, on_wait=console.print) as con:
            frame = con.sql(query).pl()
    except (duckdb.Error, FileNotFoundError) as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from error
    if output == "csv":
        sys.stdout.write(frame.write_csv())
    elif output == "json":
        sys.stdout.write(json.dumps(frame.to_dicts(), default=str, indent=1) + "\n")
    else:
        import polars as pl

        with pl.Config(tbl_rows=limit, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=200):
            print(frame)


@app.command()
def dagster(
    port: Annotated[int, typer.Option(help="Port for the Dagster UI (bound to 127.0.0.1).")] = 3000,
    home: HomeOption = None,
) -> None:
    """Start the Dagster UI and daemon (sensor on the landing folder, daily schedule) on 127.0.0.1."""
    from pipelines.launch import serve

    raise typer.Exit(serve(Home.from_env(home).ensure(), port))


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


if __name__ == "__main__":
    app()
