"""The labeling tables in the warehouse (schema `labeling`): what was queued and pushed, what came back.

    labeling.queue             one row per Argilla record flywheel created (record_id = the Argilla record id),
                               with the record exactly as sent; pushed_at is set only after Argilla accepted it
    labeling.labels            one row per (record, annotator): the latest submitted or discarded answers
    labeling.label_answers     view: one row per (record, annotator, question)
    labeling.agreement         per dataset and question: agreement between annotators on overlapping records
    labeling.record_agreement  per record and question
"""

from __future__ import annotations

import duckdb

from flywheel.warehouse import create

LABELING_DDL = """
CREATE SCHEMA IF NOT EXISTS labeling;
CREATE TABLE IF NOT EXISTS labeling.queue (
    record_id        VARCHAR PRIMARY KEY,
    dataset          VARCHAR NOT NULL,
    kind             VARCHAR NOT NULL,       -- response_review | pairwise
    request_id       VARCHAR NOT NULL,       -- the reviewed interaction (pairwise: answer A)
    request_id_b     VARCHAR,                -- pairwise: answer B
    cluster_id       VARCHAR NOT NULL,
    app_id           VARCHAR,
    model            VARCHAR,
    model_b          VARCHAR,
    strategy         VARCHAR NOT NULL,
    round            INTEGER NOT NULL,
    parent_record_id VARCHAR,                -- a later round of the same item, after low agreement
    record           JSON NOT NULL,          -- fields, metadata and suggestions as sent to Argilla
    queued_at        TIMESTAMPTZ NOT NULL,
    pushed_at        TIMESTAMPTZ,
    inclusion_probability DOUBLE             -- control: the chance to be sampled in its (app, model) stratum
);
CREATE TABLE IF NOT EXISTS labeling.labels (
    record_id        VARCHAR NOT NULL,
    user_id          VARCHAR NOT NULL,
    username         VARCHAR,
    dataset          VARCHAR NOT NULL,
    kind             VARCHAR NOT NULL,
    request_id       VARCHAR,
    request_id_b     VARCHAR,
    status           VARCHAR NOT NULL,       -- submitted | discarded
    answers          JSON NOT NULL,          -- {question: value}
    answers_hash     VARCHAR NOT NULL,
    revision         INTEGER NOT NULL,       -- 1, then +1 each time the annotator changed the response
    first_pulled_at  TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (record_id, user_id)
);
CREATE OR REPLACE VIEW labeling.label_answers AS
    SELECT l.record_id, l.dataset, l.kind, l.request_id, l.request_id_b, l.user_id, l.username, l.status,
           a.key AS question, a.value AS answer, l.updated_at
    FROM labeling.labels l, json_each(l.answers) a;
CREATE TABLE IF NOT EXISTS labeling.agreement (
    dataset          VARCHAR NOT NULL,
    question         VARCHAR NOT NULL,
    records          INTEGER NOT NULL,       -- records with 2+ submitted answers to this question
    pairs            INTEGER NOT NULL,
    agreement        DOUBLE,                 -- mean pairwise agreement in [0, 1]
    computed_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (dataset, question)
);
CREATE TABLE IF NOT EXISTS labeling.record_agreement (
    record_id        VARCHAR NOT NULL,
    question         VARCHAR NOT NULL,
    annotators       INTEGER NOT NULL,
    agreement        DOUBLE NOT NULL,
    PRIMARY KEY (record_id, question)
);
"""


def ensure_labeling_tables(con: duckdb.DuckDBPyConnection) -> None:
    create(con, LABELING_DDL)
    # queues made before control picks carried their inclusion probability
    con.execute("ALTER TABLE labeling.queue ADD COLUMN IF NOT EXISTS inclusion_probability DOUBLE")


def records_pushed(con: duckdb.DuckDBPyConnection) -> int:
    """How many queued records have reached Argilla: with none, there is nothing to pull."""
    if not con.execute("SELECT 1 FROM duckdb_tables() WHERE schema_name = 'labeling' AND table_name = 'queue'"
                       ).fetchall():
        return 0
    return con.execute("SELECT count(pushed_at) FROM labeling.queue").fetchall()[0][0]


def labels_stamp(con: duckdb.DuckDBPyConnection) -> str:
    """How many labels there are and when they last changed ('0|None' before any pull)."""
    if not con.execute("SELECT 1 FROM duckdb_tables() WHERE schema_name = 'labeling' AND table_name = 'labels'"
                       ).fetchall():
        return "0|None"
    count, changed = con.execute("SELECT count(*), max(updated_at) FROM labeling.labels").fetchall()[0]
    return f"{count}|{changed}"


def queued_by_kind(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int, int]]:
    """(kind, records queued, records pushed) per kind of labeling task."""
    return con.execute("SELECT kind, count(*), count(pushed_at) FROM labeling.queue GROUP BY 1 ORDER BY 1").fetchall()


def queue_summary(con: duckdb.DuckDBPyConnection) -> tuple[int, int, str]:
    """Records queued, records pushed, and the latest queued as a markdown table."""
    from flywheel.reports import preview

    total, pushed = con.execute("SELECT count(*), count(pushed_at) FROM labeling.queue").fetchall()[0]
    return total, pushed, preview(con, """SELECT record_id, kind, strategy, app_id, model, round FROM labeling.queue
                                         ORDER BY queued_at DESC, record_id LIMIT 10""")


def labels_summary(con: duckdb.DuckDBPyConnection) -> tuple[int, int, str]:
    """Labels held, labels discarded, and the latest as a markdown table."""
    from flywheel.reports import preview

    total, discarded = con.execute("SELECT count(*), count(*) FILTER (WHERE status = 'discarded') "
                                   "FROM labeling.labels").fetchall()[0]
    return total, discarded, preview(con, """SELECT record_id, username, status, answers FROM labeling.labels
                                            ORDER BY updated_at DESC LIMIT 10""")
