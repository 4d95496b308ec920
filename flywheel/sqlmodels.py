"""SQL models: `.sql` files by layer, run in DuckDB, with dependencies read from the SQL itself.

A model is `dbt_like_sql/<layer>/<name>.sql`; it becomes the table (or view) `<layer>.<name>`. Its
upstreams are the `schema.table` names its SELECT reads (parsed with sqlglot, CTEs excluded), so adding a
file adds a model with the right dependencies and no Python change. A header of `-- key: value` lines
configures it:

    -- materialized: incremental      (table | view | incremental; default table)
    -- partition_by: event_date       (incremental only: the DATE column of the daily partition)
    -- description: one line for the Dagster UI

An incremental model is built for a range of days at a time (one day, or a year in one backfill): it reads
`event_date BETWEEN getvariable('first_day') AND getvariable('last_day')`, and materializing a range replaces
exactly that range's rows in one transaction, so re-running never duplicates them.
"""

from __future__ import annotations

import graphlib
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import sqlglot
import yaml
from sqlglot import exp

from flywheel import sqlfunctions
from flywheel.curation import prepare_for_models
from flywheel.days import DayRange, set_day_range
from flywheel.settings import REPO_ROOT
from flywheel.warehouse import create, retrying_conflicts, transaction, writing

MODELS_DIR = REPO_ROOT / "dbt_like_sql"
LAYERS = ("staging", "intermediate", "marts")
MATERIALIZATIONS = ("table", "view", "incremental")
_HEADER = re.compile(r"^--\s*([a-z_]+)\s*:\s*(.*?)\s*$")


class ModelError(ValueError):
    """A model that cannot be loaded or run; the message names its file."""


@dataclass(frozen=True)
class SqlModel:
    layer: str
    name: str
    path: Path
    sql: str
    materialized: str
    partition_by: str | None
    description: str
    depends_on: tuple[tuple[str, str], ...]

    @property
    def relation(self) -> str:
        return f"{self.layer}.{self.name}"


def _header(path: Path, sql: str) -> dict[str, str]:
    config = {}
    for line in sql.splitlines():
        if not line.strip():
            continue
        match = _HEADER.match(line.strip())
        if not match:
            break
        config[match.group(1)] = match.group(2)
    unknown = set(config) - {"materialized", "partition_by", "description"}
    if unknown:
        raise ModelError(f"{path}: unknown header key(s) {sorted(unknown)}")
    return config


def parse_model(path: Path, layer: str) -> SqlModel:
    sql = path.read_text(encoding="utf-8").strip().rstrip(";")
    config = _header(path, sql)
    materialized = config.get("materialized", "table")
    if materialized not in MATERIALIZATIONS:
        raise ModelError(f"{path}: materialized must be one of {MATERIALIZATIONS}, got {materialized!r}")
    partition_by = config.get("partition_by")
    if materialized == "incremental" and not partition_by:
        raise ModelError(f"{path}: an incremental model needs '-- partition_by: <date column>'")
    try:
        statements = sqlglot.parse(sql, read="duckdb")
    except sqlglot.errors.ParseError as error:
        raise ModelError(f"{path}: cannot parse SQL: {error}") from error
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise ModelError(f"{path}: a model is exactly one SELECT statement")
    tree = statements[0]
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    refs = set()
    for table in tree.find_all(exp.Table):
        if table.name in ctes and not table.db:
            continue
        if not table.db:
            raise ModelError(f"{path}: table {table.name!r} needs its schema (e.g. raw.{table.name})")
        refs.add((table.db, table.name))
    return SqlModel(layer, path.stem, path, sql, materialized, partition_by, config.get("description", ""),
                    tuple(sorted(refs)))


def load_sources(root: Path = MODELS_DIR) -> set[tuple[str, str]]:
    """The tables models may read that no model makes, as declared in `sources.yml` beside the models."""
    path = root / "sources.yml"
    try:
        declared = yaml.safe_load(path.read_text(encoding="utf-8"))["sources"]
        return {(schema, table) for schema, tables in declared.items() for table in tables}
    except (OSError, KeyError, TypeError, AttributeError, yaml.YAMLError) as error:
        raise ModelError(f"{path}: expected 'sources: {{schema: [table, ...]}}' ({error})") from error


def load_models(root: Path = MODELS_DIR, sources: set[tuple[str, str]] | None = None) -> list[SqlModel]:
    """All models under `root`, in dependency order; `sources` are the tables that exist outside models
    (default: the root's `sources.yml`)."""
    sources = load_sources(root) if sources is None else sources
    models: dict[tuple[str, str], SqlModel] = {}
    for layer in LAYERS:
        for path in sorted((root / layer).glob("*.sql")):
            model = parse_model(path, layer)
            if (layer, model.name) in models:
                raise ModelError(f"{path}: a model named {model.relation} exists already")
            models[(layer, model.name)] = model
    for model in models.values():
        for ref in model.depends_on:
            if ref not in models and ref not in sources:
                raise ModelError(f"{model.path}: reads {'.'.join(ref)}, which is neither a model nor a source")
    sorter = graphlib.TopologicalSorter({key: [r for r in m.depends_on if r in models] for key, m in models.items()})
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as error:
        cycle = error.args[1]
        files = " -> ".join(str(models[key].path.relative_to(root)) for key in cycle)
        raise ModelError(f"circular dependency between models: {files}") from error
    return [models[key] for key in order]


@dataclass(frozen=True)
class Materialization:
    relation: str
    rows_written: int
    rows_total: int
    days: DayRange | None
    recreated: bool = False  # an incremental table remade because the model's columns changed


def materialize(con: duckdb.DuckDBPyConnection, model: SqlModel, days: DayRange | date | None = None
                ) -> Materialization:
    """Build a model; for an incremental one, replace exactly the rows of the days in `days`."""
    sqlfunctions.register(con)
    prepare_for_models(con)
    create(con, f"CREATE SCHEMA IF NOT EXISTS {model.layer}")
    if model.materialized == "view":
        with writing(con, model.relation):
            con.execute(f"CREATE OR REPLACE VIEW {model.relation} AS {model.sql}")
        return Materialization(model.relation, 0, _count(con, model.relation), None)
    if model.materialized == "table":
        with writing(con, model.relation):
            con.execute(f"CREATE OR REPLACE TABLE {model.relation} AS {model.sql}")
        total = _count(con, model.relation)
        return Materialization(model.relation, total, total, None)
    if days is None:
        raise ModelError(f"{model.path}: an incremental model is materialized for a range of days; give one")
    days = DayRange.of(days)
    inside = f"{model.partition_by} BETWEEN getvariable('first_day') AND getvariable('last_day')"
    set_day_range(con, days)
    # Writers of other days go on meanwhile (a lake lets them), but one that makes the table, or makes it again,
    # has it to itself.
    whole = not _exists(con, model) or _columns(con, f"({model.sql})") != _columns(con, model.relation)
    return retrying_conflicts(lambda: _replace_days(con, model, days, inside, whole))


def _replace_days(con: duckdb.DuckDBPyConnection, model: SqlModel, days: DayRange, inside: str,
                  whole: bool) -> Materialization:
    alone, shared = days.lock_keys()
    locks = writing(con, model.relation) if whole else writing(
        con, *(f"{model.relation}|{key}" for key in alone),
        shared=(model.relation, *(f"{model.relation}|{key}" for key in shared)))
    with locks, transaction(con):
        con.execute(f"CREATE TEMP TABLE model_day AS {model.sql}")
        misplaced = con.execute(f"SELECT count(*) FROM model_day WHERE ({inside}) IS NOT TRUE").fetchall()[0][0]
        if misplaced:
            raise ModelError(f"{model.path}: {misplaced} rows fall outside partition {days} (filter on "
                             f"{model.partition_by} BETWEEN getvariable('first_day') AND getvariable('last_day'))")
        exists = _exists(con, model)
        recreated = exists and _columns(con, "model_day") != _columns(con, model.relation)
        if recreated:
            # The SQL now makes other columns, so its code version changed too: every day needs building again
            # (pipelines/builds.py), and the days outside this range come back as they are built.
            con.execute(f"DROP TABLE {model.relation}")
        if not exists or recreated:
            con.execute(f"CREATE TABLE {model.relation} AS SELECT * FROM model_day LIMIT 0")
        con.execute(f"DELETE FROM {model.relation} WHERE {inside}")
        written = con.execute(f"INSERT INTO {model.relation} BY NAME SELECT * FROM model_day").fetchall()[0][0]
        con.execute("DROP TABLE model_day")
    return Materialization(model.relation, written, _count(con, model.relation), days, recreated)


def model_preview_sql(model: SqlModel, days: DayRange | None = None, rows: int = 5) -> str:
    """A few rows of a model (of the days just built, for an incremental one)."""
    where = (f" WHERE {model.partition_by} BETWEEN DATE '{days.first}' AND DATE '{days.last}'"
             if days and model.partition_by else "")
    return f"SELECT * FROM {model.relation}{where} LIMIT {rows}"


def _exists(con: duckdb.DuckDBPyConnection, model: SqlModel) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                            "AND schema_name = ? AND table_name = ?", [model.layer, model.name]).fetchall()[0][0])


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {relation}").fetchall()]


def _count(con: duckdb.DuckDBPyConnection, relation: str) -> int:
    return con.execute(f"SELECT count(*) FROM {relation}").fetchall()[0][0]
