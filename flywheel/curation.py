"""The selection rules of the curated datasets (`schemas/curation.yaml`) and the splits they are released in.

The rules reach the mart SQL as DuckDB variables (`getvariable('quality_bar')`, ...), so the SQL stays the one
place that says how rows are chosen. Splits are assigned per interaction and remembered (`curation.splits`):
a cluster's members share a split, and a cluster that was held out (validation, test) is never moved to train.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Literal

import duckdb
import msgspec
import yaml
from msgspec import Meta

from flywheel.settings import SCHEMAS_DIR
from flywheel.warehouse import create, transaction, writing

RULES_PATH = SCHEMAS_DIR / "curation.yaml"
Score = Annotated[float, Meta(ge=0, le=1)]
Source = Literal["human", "outcome", "user", "judge"]
SPLITS = ("train", "validation", "test")


class RulesError(ValueError):
    """The rules file cannot be used; the message names the file and the key."""


class _Rules(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


class Sft(_Rules):
    min_quality: Score = 0.8
    include_corrected: bool = True
    target_model: str = "gpt-4o-mini"
    token_limits: dict[str, Annotated[int, Meta(gt=0)]] = msgspec.field(default_factory=lambda: {"default": 65536})

    def token_limit(self, model: str | None = None) -> int:
        model = model or self.target_model
        return self.token_limits.get(model, self.token_limits.get("default", 65536))


class Preferences(_Rules):
    min_margin: Annotated[float, Meta(gt=0, le=1)] = 0.25


class Router(_Rules):
    quality_bar: Score = 0.7


class Eval(_Rules):
    share: Annotated[float, Meta(gt=0, le=1)] = 0.05
    pool: Annotated[list[Literal["train", "validation", "test"]], Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["validation", "test"])
    max_items: Annotated[int, Meta(gt=0)] = 5000


class Splits(_Rules):
    train: Score = 0.8
    validation: Score = 0.1
    test: Score = 0.1

    def __post_init__(self) -> None:
        if abs(self.train + self.validation + self.test - 1) > 1e-9:
            raise ValueError("train + validation + test must add up to 1")


class Rules(_Rules):
    signal_precedence: Annotated[list[Source], Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["human", "outcome", "user", "judge"])
    quality_bar: Score = 0.7
    sft: Sft = Sft()
    preferences: Preferences = Preferences()
    router: Router = Router()
    eval: Eval = Eval()
    splits: Splits = Splits()

    def __post_init__(self) -> None:
        if len(set(self.signal_precedence)) != len(self.signal_precedence):
            raise ValueError("signal_precedence names a source twice")

    @property
    def digest(self) -> str:
        """A hash of the rules as they apply (not of the file's comments): it names what a release used."""
        return hashlib.sha256(msgspec.json.encode(self, order="sorted")).hexdigest()[:16]


def load_rules(path: Path = RULES_PATH) -> Rules:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise RulesError(f"{path}: cannot read the rules: {error}") from error
    try:
        return msgspec.convert(document, Rules)
    except msgspec.ValidationError as error:  # msgspec names the key: "... - at `$.sft.min_quality`"
        raise RulesError(f"{path}: {error}") from error


def set_rule_variables(con: duckdb.DuckDBPyConnection, rules: Rules) -> None:
    """The rules as the variables the mart SQL reads."""
    values = {
        "signal_precedence": rules.signal_precedence, "quality_bar": rules.quality_bar,
        "sft_min_quality": rules.sft.min_quality, "sft_include_corrected": rules.sft.include_corrected,
        "sft_token_limit": rules.sft.token_limit(),
        "pref_min_margin": rules.preferences.min_margin, "router_quality_bar": rules.router.quality_bar,
    }
    for name, value in values.items():
        con.execute(f"SET VARIABLE {name} = ?", [value])


SPLITS_DDL = """
CREATE SCHEMA IF NOT EXISTS curation;
CREATE TABLE IF NOT EXISTS curation.eval_selection (
    cluster_id   VARCHAR PRIMARY KEY,
    app_id       VARCHAR,
    stratum      VARCHAR NOT NULL,      -- the difficulty level: 0 (no known model was good) .. 10 (all were)
    weight       DOUBLE NOT NULL,       -- the share of the app's prompts the item stands for
    chosen_at    TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS curation.splits (
    request_id   VARCHAR NOT NULL,      -- one row each (assign_splits merges on it); no key index: see below
    cluster_id   VARCHAR NOT NULL,      -- the cluster when the split was last confirmed
    split        VARCHAR NOT NULL,      -- train | validation | test
    assigned_at  TIMESTAMPTZ NOT NULL
);
"""


def ensure_splits_table(con: duckdb.DuckDBPyConnection) -> None:
    create(con, SPLITS_DDL)
    # A key index on request_id held every interaction's id in memory: at 10M interactions the first assignment
    # could not commit under a 1.5 GB memory limit. A table made with it is made again without it, once.
    if con.execute("""SELECT count(*) FROM duckdb_constraints() WHERE database_name = current_database()
                      AND schema_name = 'curation' AND table_name = 'splits' AND constraint_type = 'PRIMARY KEY'
                   """).fetchall()[0][0]:
        with writing(con, "curation.splits"), transaction(con):
            con.execute("CREATE TEMP TABLE splits_kept AS SELECT * FROM curation.splits")
            con.execute("DROP TABLE curation.splits")
            con.execute(SPLITS_DDL)
            con.execute("INSERT INTO curation.splits SELECT * FROM splits_kept")
            con.execute("DROP TABLE splits_kept")


def prepare_for_models(con: duckdb.DuckDBPyConnection, rules: Rules | None = None) -> None:
    """What the SQL models need beyond their own tables: the rules' variables, and the source tables that a
    warehouse without labels or splits yet does not have (empty, so the marts are built from what exists)."""
    from flywheel.labeling.store import ensure_labeling_tables

    set_rule_variables(con, rules or load_rules())
    ensure_labeling_tables(con)
    ensure_splits_table(con)


def choose_eval_items(con: duckdb.DuckDBPyConnection, rules: Rules) -> dict[str, int]:
    """Replace curation.eval_selection with the eval set flywheel.evalsets chooses from marts.router_examples:
    per app, eval.share of its prompts (at most eval.max_items in all) from the held-out splits in eval.pool.
    Returns items per app."""
    import numpy as np

    from flywheel import evalsets

    ensure_splits_table(con)
    frame = con.execute("""
        SELECT cluster_id, any_value(app_id) AS app_id, any_value(split) AS split, list(model ORDER BY model) AS models,
               list(CASE WHEN quality_score IS NULL THEN NULL ELSE meets_bar::DOUBLE END ORDER BY model) AS good
        FROM marts.router_examples GROUP BY cluster_id ORDER BY cluster_id""").pl()
    con.execute("DELETE FROM curation.eval_selection")
    if frame.is_empty():
        return {}
    models = sorted({m for row in frame["models"].to_list() for m in row})
    column = {m: i for i, m in enumerate(models)}
    good = np.full((len(frame), len(models)), np.nan)
    for r, (names, values) in enumerate(zip(frame["models"].to_list(), frame["good"].to_list(), strict=True)):
        for name, value in zip(names, values, strict=True):
            good[r, column[name]] = np.nan if value is None else value
    keys, apps = frame["cluster_id"].to_list(), frame["app_id"].to_list()
    pool = frame["split"].is_in(rules.eval.pool).to_numpy()
    chosen = []
    for app in sorted(set(apps)):
        rows = np.array([i for i, a in enumerate(apps) if a == app])
        size = max(1, round(rules.eval.share * len(rows)))
        picked = evalsets.choose(good[rows], [app] * len(rows), [keys[i] for i in rows], pool[rows], size)
        chosen += [(keys[rows[i]], app, s.rsplit("|", 1)[1], float(w))
                   for i, s, w in zip(picked.items, picked.strata, picked.weights, strict=True)]
    if len(chosen) > rules.eval.max_items:  # a stable subset; each app's weights still sum to one
        chosen = sorted(chosen, key=lambda c: hashlib.md5(c[0].encode()).hexdigest())[:rules.eval.max_items]
        totals: dict[str, float] = {}
        for _, app, _, weight in chosen:
            totals[app] = totals.get(app, 0.0) + weight
        chosen = [(c, a, s, w / totals[a]) for c, a, s, w in chosen]
    if chosen:
        con.executemany("INSERT INTO curation.eval_selection VALUES (?, ?, ?, ?, now())", chosen)
    return dict(con.execute("SELECT app_id, count(*) FROM curation.eval_selection GROUP BY 1 ORDER BY 1").fetchall())


def assign_splits(con: duckdb.DuckDBPyConnection, rules: Rules) -> dict[str, int]:
    """Give every clustered interaction its cluster's split and remember it; return members per split.

    A cluster with a held-out member is held out (test before validation), else it stays train if any member
    was; a new cluster's split follows a hash of its id, so it is the same on every machine."""
    ensure_splits_table(con)
    train, validation = rules.splits.train, rules.splits.train + rules.splits.validation
    # MERGE, not INSERT OR REPLACE: a lake's tables have no key to replace by
    con.execute(f"""
        MERGE INTO curation.splits USING (
        WITH members AS (
            SELECT c.request_id, c.cluster_id, s.split FROM dedup.clusters c
            LEFT JOIN curation.splits s USING (request_id)
        ),
        decided AS (
            SELECT cluster_id,
                   CASE WHEN bool_or(split = 'test') THEN 'test'
                        WHEN bool_or(split = 'validation') THEN 'validation'
                        WHEN bool_or(split = 'train') THEN 'train'
                        ELSE CASE WHEN (md5_number(cluster_id) % 1000000) / 1e6 < {train} THEN 'train'
                                  WHEN (md5_number(cluster_id) % 1000000) / 1e6 < {validation} THEN 'validation'
                                  ELSE 'test' END
                   END AS split
            FROM members GROUP BY cluster_id
        )
        SELECT m.request_id, m.cluster_id, d.split, now() AS assigned_at
        FROM members m JOIN decided d USING (cluster_id)
        WHERE m.split IS DISTINCT FROM d.split OR m.split IS NULL
        ) changed ON splits.request_id = changed.request_id
        WHEN MATCHED THEN UPDATE SET cluster_id = changed.cluster_id, split = changed.split,
                                     assigned_at = changed.assigned_at
        WHEN NOT MATCHED THEN INSERT (request_id, cluster_id, split, assigned_at)
            VALUES (changed.request_id, changed.cluster_id, changed.split, changed.assigned_at)
    """)
    return dict(con.execute("SELECT split, count(*) FROM curation.splits GROUP BY 1").fetchall())
