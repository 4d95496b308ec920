"""Reading releases: the SQL views over them, their list, and what changed between two versions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from flywheel.curation import SPLITS
from flywheel.publish import DATASETS, LATEST, dataset_folder, latest_version, manifest, versions
from flywheel.warehouse import create, sql_literal, writing


def refresh_views(con: duckdb.DuckDBPyConnection, releases: Path) -> list[str]:
    """`releases.<dataset>` (the latest release, every split) and `releases.<dataset>_versions` (every
    release, with its `version`) for each published dataset; returns the views made."""
    create(con, "CREATE SCHEMA IF NOT EXISTS releases")
    with writing(con, "releases"):
        return _refresh_views(con, releases)


def _refresh_views(con: duckdb.DuckDBPyConnection, releases: Path) -> list[str]:
    made = []
    for name in DATASETS:
        folder = dataset_folder(releases, name)
        published = [v for v in versions(releases, name) if any((folder / v / "data").glob("*.parquet"))]
        if not published:
            continue
        newest = latest_version(releases, name)
        latest = folder / (newest if newest in published else published[-1]) / "data" / "*.parquet"
        every = [str(folder / v / "data" / "*.parquet") for v in published]
        con.execute(f"CREATE OR REPLACE VIEW releases.{name} AS "
                    f"SELECT * FROM read_parquet({sql_literal(str(latest))}, union_by_name = true)")
        version = r"regexp_extract(filename, '(v[0-9]+)[/\\]data[/\\]', 1)"
        con.execute(f"""CREATE OR REPLACE VIEW releases.{name}_versions AS
                        SELECT {version} AS version, * EXCLUDE (filename)
                        FROM read_parquet([{", ".join(map(sql_literal, every))}], filename = true,
                                          union_by_name = true)""")
        made += [f"releases.{name}", f"releases.{name}_versions"]
    return made


@dataclass(frozen=True)
class SplitDiff:
    split: str
    added: int
    removed: int
    changed: int
    unchanged: int


def diff(releases: Path, dataset: str, old: str, new: str) -> list[SplitDiff]:
    """Rows added, removed and changed per split between two versions, rows matched by the dataset's key."""
    key = DATASETS[dataset].key
    con = duckdb.connect()
    try:
        out = []
        for split in SPLITS:
            sides = []
            for version in (old, new):
                path = dataset_folder(releases, dataset) / version / "data" / f"{split}.parquet"
                sides.append(f"(SELECT {key} AS k, md5(t::VARCHAR) AS h FROM read_parquet({sql_literal(str(path))}) t)"
                             if path.exists() else "(SELECT NULL::VARCHAR AS k, NULL::VARCHAR AS h WHERE false)")
            added, removed, changed, same = con.execute(f"""
                SELECT count(*) FILTER (WHERE a.k IS NULL), count(*) FILTER (WHERE b.k IS NULL),
                       count(*) FILTER (WHERE a.h <> b.h), count(*) FILTER (WHERE a.h = b.h)
                FROM {sides[0]} a FULL JOIN {sides[1]} b ON a.k = b.k""").fetchall()[0]
            out.append(SplitDiff(split, added, removed, changed, same))
        return out
    finally:
        con.close()


def listing(releases: Path) -> list[tuple[str, str, str, int, bool]]:
    """(dataset, version, created_at, rows, is latest) for every release."""
    rows = []
    for name in DATASETS:
        latest = latest_version(releases, name)
        for version in versions(releases, name):
            document = manifest(releases, name, version)
            rows.append((name, version, document["created_at"], sum(document["rows"].values()), version == latest))
    return rows


def resolve(releases: Path, dataset: str, version: str | None) -> str:
    """A version name as the user gave it ('latest', 'v0002', '2'); an error names what exists."""
    known = versions(releases, dataset)
    if not known:
        raise LookupError(f"{dataset} has no releases yet under {releases} (run `flywheel publish`)")
    if version in (None, LATEST):
        return latest_version(releases, dataset) or known[-1]
    name = version if version.startswith("v") else f"v{int(version):04d}"
    if name not in known:
        raise LookupError(f"{dataset} has no release {version}; it has {', '.join(known)}")
    return name
