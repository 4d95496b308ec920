"""SQL models: dependencies read from the SQL, errors naming the file, daily partitions replaced not duplicated."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from flywheel.ingest import ingest_file
from flywheel.reference import write_model_prices
from flywheel.sqlmodels import MODELS_DIR, ModelError, load_models, load_sources, materialize
from tests.factories import feedback, interaction, write_lines

RAW = load_sources()  # the tables declared in dbt_like_sql/sources.yml


def write_model(root: Path, layer: str, name: str, sql: str) -> Path:
    path = root / layer / f"{name}.sql"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sql)
    return path


def test_the_project_models_load_in_dependency_order():
    models = load_models()
    order = [m.relation for m in models]
    assert order.index("staging.stg_interactions") < order.index("intermediate.int_interactions")
    assert order.index("intermediate.int_feedback_by_request") < order.index("intermediate.int_interactions")
    stg = next(m for m in models if m.relation == "staging.stg_interactions")
    assert stg.depends_on == (("raw", "interactions"), ("reference", "model_prices"))
    assert (stg.materialized, stg.partition_by) == ("incremental", "event_date")


def test_a_new_file_is_a_new_model_with_its_upstreams(tmp_path):
    root = tmp_path / "models"
    shutil.copytree(MODELS_DIR, root)
    write_model(root, "marts", "calls_per_model", """
        -- description: calls per model
        WITH i AS (SELECT * FROM intermediate.int_interactions)
        SELECT model, count(*) AS calls FROM i GROUP BY model
    """)
    mart = next(m for m in load_models(root, RAW) if m.name == "calls_per_model")
    assert mart.depends_on == (("intermediate", "int_interactions"),)  # the CTE is not a dependency
    assert mart.description == "calls per model"


def test_the_sources_models_may_read_are_declared_beside_them(tmp_path):
    root = tmp_path / "models"
    shutil.copytree(MODELS_DIR, root)
    assert ("raw", "interactions") in {m for model in load_models(root) for m in model.depends_on}
    (root / "sources.yml").write_text("sources: [raw]\n")
    with pytest.raises(ModelError, match=r"models/sources.yml: expected 'sources: \{schema: \[table"):
        load_models(root)


@pytest.mark.parametrize(("files", "message"), [
    ({"staging/a.sql": "SELECT * FROM staging.b", "staging/b.sql": "SELECT * FROM staging.a"},
     r"circular dependency between models: staging/(a|b).sql -> staging/(a|b).sql"),
    ({"staging/a.sql": "SELECT * FROM raw.nope"}, r"staging/a.sql: reads raw.nope, which is neither"),
    ({"staging/a.sql": "SELECT * FROM interactions"}, r"staging/a.sql: table 'interactions' needs its schema"),
    ({"staging/a.sql": "SELEC 1 FROM"}, r"staging/a.sql: (cannot parse SQL|a model is exactly one SELECT)"),
    ({"staging/a.sql": "-- materialized: incremental\nSELECT 1"}, r"staging/a.sql: an incremental model needs"),
    ({"staging/a.sql": "-- materialised: table\nSELECT 1"}, r"staging/a.sql: unknown header key"),
])
def test_broken_models_are_clear_errors_naming_the_file(tmp_path, files, message):
    for relative, sql in files.items():
        layer, name = relative.split("/")
        write_model(tmp_path, layer, name.removesuffix(".sql"), sql)
    with pytest.raises(ModelError, match=message):
        load_models(tmp_path, RAW)


def _warehouse_with_two_days(con, tmp_path):
    events = [
        interaction("d1-a", timestamp="2026-11-20T09:00:00Z", tokens_in=None, tokens_out=None),
        interaction("d1-b", timestamp="2026-11-20T23:59:59Z", model="gpt-4o-2024-08-06", cost_usd=0.5),
        interaction("d2-a", timestamp="2026-11-21T00:00:01Z", model="house-model"),
        feedback("d1-a", thumb="down"),
    ]
    ingest_file(con, write_lines(tmp_path / "in.jsonl", events))
    write_model_prices(con)


def _build(con, day: date) -> dict[str, int]:
    from flywheel.dedup import MinHasher, build_clusters

    written = {}
    for model in load_models():
        if model.relation == "intermediate.int_cluster_members":
            build_clusters(con, MinHasher())
        result = materialize(con, model, day if model.materialized == "incremental" else None)
        written[model.relation] = result.rows_written
    return written


def test_staging_fills_cost_and_tokens_and_marks_how(con, tmp_path):
    _warehouse_with_two_days(con, tmp_path)
    _build(con, date(2026, 11, 20))
    rows = {r[0]: r[1:] for r in con.execute("""
        SELECT request_id, tokens_in, tokens_source, round(cost_usd, 8), cost_source, canonical_model, prompt_text
        FROM staging.stg_interactions""").fetchall()}
    assert set(rows) == {"d1-a", "d1-b"}  # only the partition's day
    # Be brief. + Reset password? = 9 + 15 characters over 2 messages: round(24 / 4) + 2 * 4
    assert rows["d1-a"][:2] == (14, "estimated")
    assert rows["d1-a"][3:] == ("price_table", "gpt-4o-mini", "Reset password?")
    assert rows["d1-b"][2:4] == (0.5, "logged")


def test_feedback_joins_whichever_arrived_first(con, tmp_path):
    _warehouse_with_two_days(con, tmp_path)
    _build(con, date(2026, 11, 20))
    ingest_file(con, write_lines(tmp_path / "late.jsonl", [feedback("d1-b", feedback_type="rating", thumb=None,
                                                                     rating=4, rating_scale=5)]))
    _build(con, date(2026, 11, 20))
    scores = dict(con.execute("SELECT request_id, feedback_score FROM intermediate.int_interactions").fetchall())
    assert scores == {"d1-a": 0.0, "d1-b": 0.8}


def test_rematerializing_a_day_replaces_it_and_leaves_other_days_alone(con, tmp_path):
    _warehouse_with_two_days(con, tmp_path)
    _build(con, date(2026, 11, 20))
    _build(con, date(2026, 11, 21))
    again = _build(con, date(2026, 11, 20))
    assert again["staging.stg_interactions"] == 2
    per_day = con.execute("SELECT event_date::VARCHAR, count(*) FROM staging.stg_interactions GROUP BY 1 ORDER BY 1")
    assert per_day.fetchall() == [("2026-11-20", 2), ("2026-11-21", 1)]
    unpriced = con.execute("SELECT cost_source FROM staging.stg_interactions WHERE request_id = 'd2-a'").fetchall()
    assert unpriced == [("unknown",)]


def test_a_model_whose_columns_changed_is_made_anew(con, tmp_path):
    _warehouse_with_two_days(con, tmp_path)
    root = tmp_path / "m"
    path = write_model(root, "staging", "per_day", "-- materialized: incremental\n-- partition_by: event_date\n"
                       "SELECT request_id, event_date FROM raw.interactions "
                       "WHERE event_date BETWEEN getvariable('first_day') AND getvariable('last_day')")
    (model,) = load_models(root, RAW)
    assert not materialize(con, model, date(2026, 11, 20)).recreated
    path.write_text(path.read_text().replace("SELECT request_id,", "SELECT request_id, model,"))
    (model,) = load_models(root, RAW)
    result = materialize(con, model, date(2026, 11, 21))
    assert result.recreated and result.rows_total == 1  # the other day comes back when it is built again
    assert [c[0] for c in con.execute("DESCRIBE staging.per_day").fetchall()] == ["request_id", "model", "event_date"]


def test_an_incremental_model_that_ignores_its_partition_is_refused(con, tmp_path):
    _warehouse_with_two_days(con, tmp_path)
    path = write_model(tmp_path / "m", "staging", "all_days", "-- materialized: incremental\n"
                       "-- partition_by: event_date\nSELECT request_id, event_date FROM raw.interactions")
    (model,) = load_models(path.parent.parent, RAW)
    with pytest.raises(ModelError, match="1 rows fall outside partition 2026-11-20"):
        materialize(con, model, date(2026, 11, 20))
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'all_days'").fetchall() == [(0,)]


def test_staging_holds_only_redacted_text_and_counts_what_it_redacted(con, tmp_path):
    leaky = interaction(
        "leak", timestamp="2026-11-20T08:00:00Z",
        messages=[{"role": "user", "content": "my key is sk-proj-abcdefghijklmnopqrstuvwxyz123456, mail me: x@y.io"}],
        response={"role": "assistant", "content": "Call +1 415 555 0100 instead."},
    )
    ingest_file(con, write_lines(tmp_path / "leak.jsonl", [leaky, feedback("leak", feedback_type="correction",
                                                                           thumb=None, correction="write z@q.org")]))
    write_model_prices(con)
    _build(con, date(2026, 11, 20))
    prompt, response, first = con.execute("""SELECT prompt_text, response_text, messages[1].content
                                             FROM intermediate.int_interactions""").fetchall()[0]
    assert prompt == first == "my key is [API_KEY], mail me: [EMAIL]"
    assert response == "Call [PHONE] instead."
    assert con.execute("SELECT correction FROM staging.stg_feedback").fetchall() == [("write [EMAIL]",)]
    counts = con.execute("SELECT field, kind, redactions FROM intermediate.int_redaction_counts ORDER BY ALL"
                         ).fetchall()
    assert counts == [("prompt", "API_KEY", 1), ("prompt", "EMAIL", 1), ("response", "PHONE", 1)]
    raw = con.execute("SELECT messages[1].content FROM raw.interactions").fetchall()[0][0]
    assert "sk-proj-" in raw  # the raw layer keeps what was logged
