"""Publishing: the marts become immutable, versioned, validated releases that say what they were built from."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml

from flywheel import warehouse
from flywheel.curation import RulesError, assign_splits, ensure_splits_table, load_rules
from flywheel.publish import DATASETS, ReleaseError, latest_version, manifest, publish, remove_incomplete, versions
from flywheel.releases import diff, refresh_views
from flywheel.settings import Home
from flywheel.simulate import simulate
from tests.factories import feedback, interaction, write_lines


@pytest.fixture(scope="module")
def published_home(tmp_path_factory) -> Home:
    """A home the main job filled: simulated traffic ingested, built, and published once."""
    from pipelines.launch import run_main_job

    home = Home(tmp_path_factory.mktemp("published")).ensure()
    simulate(home.landing / "sim.jsonl", 2_000, days=3, seed=5)
    assert run_main_job(home, labeling=False).success
    return home


@pytest.fixture
def home_copy(published_home: Home, tmp_path: Path) -> Home:
    shutil.copytree(published_home.root, tmp_path / "copy", symlinks=True)
    return Home(tmp_path / "copy")


def _files_match_their_manifest(folder: Path) -> None:
    document = json.loads((folder / "manifest.json").read_text())
    listed = set(document["files"])
    present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json"}
    assert listed == present
    for name, entry in document["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry["sha256"], name


def test_the_main_job_ends_with_a_release_of_every_dataset(published_home):
    releases = published_home.releases
    for name in DATASETS:
        version = latest_version(releases, name)
        assert version == "v0001", name
        folder = releases / name / version
        _files_match_their_manifest(folder)
        document = manifest(releases, name, version)
        assert sum(document["rows"].values()) > 0, name
        assert document["built_from"]["days"][0] <= document["built_from"]["days"][1]
        assert document["selection"]["sha256"] == load_rules().digest
        for split, rows in document["rows"].items():
            if rows:
                assert pq.read_table(folder / "data" / f"{split}.parquet").num_rows == rows
                assert pl.read_parquet(folder / "data" / f"{split}.parquet").height == rows


def test_a_release_reads_as_parquet_openai_jsonl_and_a_dataset_card(published_home):
    folder = published_home.releases / "sft_examples" / "latest"
    card = (folder / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    files = {entry["split"]: entry["path"] for entry in header["configs"][0]["data_files"]}
    assert set(files) <= {"train", "validation", "test"} and all((folder / p).exists() for p in files.values())
    assert "## By app_id" in card and "## Filters applied" in card
    for line in (folder / "openai" / "train.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert record["messages"][-1]["role"] == "assistant"
        assert all(m.get("content") or m.get("tool_calls") for m in record["messages"])
        assert all(value is not None for m in record["messages"] for value in m.values())
    pairs = (published_home.releases / "preference_pairs" / "latest" / "openai" / "train.jsonl").read_text()
    first = json.loads(pairs.splitlines()[0])
    assert set(first) == {"input", "preferred_output", "non_preferred_output"}
    assert first["input"]["messages"][-1]["role"] == "user"
    assert first["preferred_output"][0]["content"] != first["non_preferred_output"][0]["content"]
    wide = pl.read_parquet(published_home.releases / "router_examples" / "latest" / "wide" / "train.parquet")
    models = pl.read_parquet(published_home.releases / "router_examples" / "latest" / "data" / "train.parquet")
    assert {f"{m}_score" for m in models["model"].unique()} <= set(wide.columns)
    assert wide.height == models["cluster_id"].n_unique()


def test_the_releases_are_one_query_away(published_home):
    with warehouse.session(published_home, read_only=True) as con:
        for name in DATASETS:
            latest = con.execute(f"SELECT count(*) FROM releases.{name}").fetchall()[0][0]
            assert latest == sum(manifest(published_home.releases, name, "v0001")["rows"].values())
            assert con.execute(f"SELECT DISTINCT version FROM releases.{name}_versions").fetchall() == [("v0001",)]


def test_publishing_again_without_changes_makes_no_version_and_new_data_shows_in_the_diff(home_copy):
    from pipelines.launch import publish as publish_releases

    assert publish_releases(home_copy).success
    assert all(versions(home_copy.releases, name) == ["v0001"] for name in DATASETS)
    new = [interaction(f"new-{i}", timestamp="2026-11-20T10:00:00Z", app_id="brand-new-app",
                       messages=[{"role": "user", "content": f"A question never seen before, number {i} of many"}],
                       response={"role": "assistant", "content": f"A fine answer {i}"}) for i in range(30)]
    new += [feedback(f"new-{i}", feedback_type="rating", rating=5, rating_scale=5, thumb=None) for i in range(30)]
    write_lines(home_copy.landing / "more.jsonl", new)
    from pipelines.launch import run_main_job

    assert run_main_job(home_copy, labeling=False).success
    assert versions(home_copy.releases, "curated_interactions") == ["v0001", "v0002"]
    changes = diff(home_copy.releases, "curated_interactions", "v0001", "v0002")
    assert sum(d.added for d in changes) == 30 and sum(d.removed for d in changes) == 0
    document = manifest(home_copy.releases, "curated_interactions", "v0002")
    assert document["previous"] == "v0001"


def _clusters(con: duckdb.DuckDBPyConnection, members: dict[str, str]) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS dedup")
    con.execute("CREATE OR REPLACE TABLE dedup.clusters (request_id VARCHAR, cluster_id VARCHAR)")
    con.executemany("INSERT INTO dedup.clusters VALUES (?, ?)", list(members.items()))


def test_splits_keep_clusters_whole_and_held_out_prompts_never_move_to_train():
    con = duckdb.connect()
    rules = load_rules()
    _clusters(con, {f"r{i}": f"c{i}" for i in range(2_000)})
    first = dict(con.execute("SELECT request_id, split FROM curation.splits").fetchall()) if assign_splits(
        con, rules) else {}
    shares = {s: sum(v == s for v in first.values()) / len(first) for s in ("train", "validation", "test")}
    assert abs(shares["train"] - 0.8) < 0.05 and abs(shares["test"] - 0.1) < 0.03
    # New days merge clusters: every pair (r0, r1), (r2, r3), ... becomes one cluster, and new members join.
    merged = {f"r{i}": f"c{i - i % 2}" for i in range(2_000)} | {f"n{i}": f"c{i - i % 2}" for i in range(0, 2_000, 7)}
    _clusters(con, merged)
    assign_splits(con, rules)
    second = dict(con.execute("SELECT request_id, split FROM curation.splits").fetchall())
    held_out = {r for r, s in first.items() if s != "train"}
    assert all(second[r] != "train" for r in held_out)  # never back to train
    by_cluster = {}
    for request, cluster in merged.items():
        by_cluster.setdefault(cluster, set()).add(second[request])
    assert all(len(splits) == 1 for splits in by_cluster.values())  # a cluster is on one side
    assign_splits(con, rules)  # again, nothing new: nothing moves
    assert dict(con.execute("SELECT request_id, split FROM curation.splits").fetchall()) == second


def test_a_splits_table_made_with_a_key_index_is_made_again_without_it_keeping_every_split():
    """The key index held every interaction's id in memory (10M did not commit under 1.5 GB); the splits stay."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA curation")
    con.execute("""CREATE TABLE curation.splits (request_id VARCHAR PRIMARY KEY, cluster_id VARCHAR NOT NULL,
                   split VARCHAR NOT NULL, assigned_at TIMESTAMPTZ NOT NULL)""")
    con.execute("INSERT INTO curation.splits VALUES ('r0', 'c0', 'test', now()), ('r1', 'c1', 'train', now())")
    _clusters(con, {"r0": "c0", "r1": "c1", "r2": "c0"})
    assign_splits(con, load_rules())
    assert con.execute("""SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'splits'
                          AND constraint_type = 'PRIMARY KEY'""").fetchall() == [(0,)]
    assert con.execute("SELECT request_id, split FROM curation.splits ORDER BY 1").fetchall() == [
        ("r0", "test"), ("r1", "train"), ("r2", "test")]  # r2 joins its held-out cluster
    with pytest.raises(duckdb.ConstraintException):
        con.execute("INSERT INTO curation.splits VALUES (NULL, 'c9', 'train', now())")


def test_a_release_with_invalid_rows_is_not_published_and_names_rows_and_reasons(tmp_path):
    con = duckdb.connect()
    ensure_splits_table(con)
    message = "STRUCT(role VARCHAR, content VARCHAR, name VARCHAR, tool_calls JSON, tool_call_id VARCHAR, " \
              "refusal VARCHAR)"
    con.execute("""CREATE SCHEMA marts; CREATE TABLE marts.sft_examples AS
        SELECT * FROM (VALUES
            ('ok-1', 'train', [{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': 'hello'}]),
            ('bad-role', 'train', [{'role': 'wizard', 'content': 'hi'}, {'role': 'assistant', 'content': 'x'}]),
            ('ends-user', 'train', [{'role': 'user', 'content': 'hi'}]),
            ('empty', 'test', [{'role': 'user', 'content': ''}, {'role': 'assistant', 'content': 'x'}]),
            ('long', 'test', [{'role': 'user', 'content': repeat('a', 400000)}, {'role': 'assistant', 'content': 'x'}])
        ) t(request_id, split, m0)""")
    con.execute(f"ALTER TABLE marts.sft_examples ADD COLUMN messages {message}[]")
    con.execute(f"UPDATE marts.sft_examples SET messages = m0::{message}[]")
    con.execute("ALTER TABLE marts.sft_examples DROP COLUMN m0")
    con.execute("ALTER TABLE marts.sft_examples ADD COLUMN tools JSON")
    with pytest.raises(ReleaseError) as error:
        publish(con, tmp_path / "releases", "sft_examples")
    text = str(error.value)
    assert "4 row(s)" in text and "nothing was published" in text
    assert "bad-role: message 1: unknown role wizard" in text
    assert "ends-user: the last message is from user, not the assistant" in text
    assert "empty: message 1 (user): empty content" in text
    assert "long: about 100" in text and "tokens, over the 65536 of gpt-4o-mini" in text
    assert versions(tmp_path / "releases", "sft_examples") == []
    assert not any((tmp_path / "releases" / "sft_examples").iterdir())  # nothing half-written left


def test_secrets_planted_in_raw_traffic_never_reach_a_released_file(tmp_path):
    from pipelines.launch import run_main_job

    home = Home(tmp_path / "home").ensure()
    secrets = ["jane.doe@example.com", "sk-proj-4f9Qw8ZbX2LmN7vR1tY6uI3oP0aS5dF8gH", "4111 1111 1111 1111",
               "+1 415 555 0134"]
    events = []
    for i in range(60):
        secret = secrets[i % len(secrets)]
        events.append(interaction(
            f"leak-{i}", timestamp=f"2026-11-2{i % 3}T10:00:00Z", model=("gpt-4o", "gpt-4o-mini")[i % 2],
            messages=[{"role": "system", "content": f"Internal contact {secret}"},
                      {"role": "user", "content": f"My details are {secret}, question {i // 2}"}],
            response={"role": "assistant", "content": f"Noted {secret}; we will call you, answer {i}",
                      "tool_calls": [{"id": f"c{i}", "type": "function",
                                      "function": {"name": "crm", "arguments": json.dumps({"who": secret})}}]},
            tools=[{"type": "function", "function": {"name": "crm", "description": f"owner {secret}"}}]))
        events.append(feedback(f"leak-{i}", feedback_type="correction", correction=f"Write to {secret}",
                               thumb=None, source="user"))
        events.append(feedback(f"leak-{i}", feedback_type="rating", rating=i % 6, rating_scale=5, thumb=None,
                               source="user", timestamp="2026-11-20T10:06:00Z"))
    write_lines(home.landing / "leaky.jsonl", events)
    assert run_main_job(home, labeling=False).success
    released = [p for p in home.releases.rglob("*") if p.is_file() and p.suffix not in (".npz", ".png")]
    assert any(p.suffix == ".jsonl" for p in released) and any(p.suffix == ".parquet" for p in released)
    con = duckdb.connect()
    curated = home.releases / "curated_interactions" / "latest" / "data" / "*.parquet"
    assert con.execute(f"SELECT count(*) FROM '{curated}' WHERE corrected").fetchall()[0][0] > 0  # leaky rows are in
    for path in released:
        text = (con.execute(f"SELECT string_agg(t::VARCHAR, chr(10)) FROM read_parquet('{path}') t").fetchall()[0][0]
                if path.suffix == ".parquet" else path.read_text())
        for secret in secrets:
            for variant in {secret, secret.replace(" ", ""), json.dumps(secret)[1:-1]}:
                assert variant not in (text or ""), f"{secret!r} in {path}"


def test_a_publisher_killed_mid_write_never_leaves_a_visible_half_release(home_copy):
    import random

    # Each run drops a few more rows, so that each has a new release to write; its files are written slowly, so
    # that the kills land while they are.
    script = ("import sys, time; from pathlib import Path; from flywheel import publish as p, warehouse; "
              "from flywheel.publish import publish; from flywheel.settings import Home\n"
              "write = p._write_parquet\n"
              "p._write_parquet = lambda *args: (time.sleep(0.25), write(*args))\n"
              "home = Home(Path(sys.argv[1])); con = warehouse.connect(home)\n"
              "for name in ['router_examples', 'sft_examples']:\n"
              "    con.execute(f'DELETE FROM marts.{name} WHERE rowid IN (SELECT rowid FROM marts.{name} "
              "ORDER BY rowid LIMIT {sys.argv[2]})')\n"
              "    publish(con, home.releases, name)\n")
    whole = subprocess.run([sys.executable, "-c", script, str(home_copy.root), "1"], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    assert versions(home_copy.releases, "sft_examples") == ["v0001", "v0002"]
    rng = random.Random(7)
    interrupted: set[Path] = set()
    for attempt in range(8):
        process = subprocess.Popen([sys.executable, "-c", script, str(home_copy.root), str(attempt + 2)])
        time.sleep(rng.uniform(1.0, 4.0))
        process.kill()
        process.wait()
        for name in ("router_examples", "sft_examples"):
            folder = home_copy.releases / name
            interrupted |= set(folder.glob(".incoming-*"))  # a kill that landed mid-write
            for version in versions(home_copy.releases, name):
                _files_match_their_manifest(folder / version)
            latest = os.readlink(folder / "latest")
            assert latest in versions(home_copy.releases, name)
            _files_match_their_manifest(folder / latest)
    assert interrupted, "no kill landed while a release was being written"
    assert remove_incomplete(home_copy.releases) == len(interrupted)
    with warehouse.session(home_copy) as con:
        refresh_views(con, home_copy.releases)
        assert con.execute("SELECT count(*) FROM releases.router_examples").fetchall()[0][0] > 0


def test_a_rules_file_with_an_unknown_key_or_a_bad_value_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "curation.yaml"
    path.write_text("sft: {min_qualty: 0.5}\n")
    with pytest.raises(RulesError, match=r"curation\.yaml: Object contains unknown field `min_qualty` - at `\$\.sft`"):
        load_rules(path)
    path.write_text("quality_bar: 3\n")
    with pytest.raises(RulesError, match=r"curation\.yaml: .* - at `\$\.quality_bar`"):
        load_rules(path)
    path.write_text("signal_precedence: [human, vibes]\n")
    with pytest.raises(RulesError, match=r"signal_precedence"):
        load_rules(path)


def test_a_mart_whose_checks_fail_is_not_released(home_copy, tmp_path, monkeypatch):
    from flywheel import quality
    from pipelines.launch import publish as publish_releases

    suites = tmp_path / "expectations"
    shutil.copytree(quality.SUITES_DIR, suites)
    strict = json.loads((suites / "sft_examples.json").read_text())
    strict["expectations"].append({"type": "expect_column_values_to_be_in_set", "severity": "critical",
                                   "kwargs": {"column": "split", "value_set": ["nowhere"]}})
    (suites / "sft_examples.json").write_text(json.dumps(strict))
    monkeypatch.setattr(quality, "SUITES_DIR", suites)
    write_lines(home_copy.landing / "more.jsonl", [
        interaction(f"more-{i}", messages=[{"role": "user", "content": f"Something new to ask, number {i}"}],
                    response={"role": "assistant", "content": f"Answer {i}"}) for i in range(20)] + [
        feedback(f"more-{i}", feedback_type="rating", rating=5, rating_scale=5, thumb=None) for i in range(20)])
    from pipelines.launch import run_main_job

    result = run_main_job(home_copy, labeling=False)
    assert not result.success  # the check failed the run ...
    assert versions(home_copy.releases, "sft_examples") == ["v0001"]  # ... and held back the release
    assert versions(home_copy.releases, "curated_interactions") == ["v0001", "v0002"]  # the others went out
    monkeypatch.setattr(quality, "SUITES_DIR", quality.SCHEMAS_DIR / "expectations")
    assert publish_releases(home_copy).success
    assert versions(home_copy.releases, "sft_examples") == ["v0001", "v0002"]


def test_hugging_face_datasets_loads_a_release_by_its_card(published_home, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    import datasets

    folder = published_home.releases / "sft_examples" / "latest"
    loaded = datasets.load_dataset(str(folder.resolve()), cache_dir=str(tmp_path / "hf-cache"))
    rows = manifest(published_home.releases, "sft_examples", "v0001")["rows"]
    assert {split: len(part) for split, part in loaded.items()} == {s: n for s, n in rows.items() if n}
    assert loaded["train"][0]["messages"][-1]["role"] == "assistant"
    by_files = datasets.load_dataset("parquet", data_files={"train": str(folder / "data" / "train.parquet")},
                                     cache_dir=str(tmp_path / "hf-cache"))
    assert len(by_files["train"]) == rows["train"]


def test_an_overlong_or_empty_conversation_is_left_out_of_training_data_not_blocking_it(tmp_path):
    from pipelines.launch import run_main_job

    home = Home(tmp_path / "home").ensure()
    prompts = {"long": "x" * 400_000, "empty": "", "parts": [{"type": "text", "text": "What is in this picture?"},
                                                             {"type": "image_url", "image_url": {"url": "http://i/1"}}],
               "plain": "How do I reset my password?"}
    events = [interaction(name, messages=[{"role": "user", "content": content}],
                          response={"role": "assistant", "content": f"An answer about {name}"})
              for name, content in prompts.items()]
    events += [feedback(name, feedback_type="rating", rating=5, rating_scale=5, thumb=None) for name in prompts]
    write_lines(home.landing / "odd.jsonl", events)
    assert run_main_job(home, labeling=False).success
    con = duckdb.connect()
    data = home.releases / "{}" / "latest" / "data" / "*.parquet"
    curated = {r for (r,) in con.execute(f"SELECT request_id FROM '{str(data).format('curated_interactions')}'"
                                         ).fetchall()}
    sft = {r for (r,) in con.execute(f"SELECT request_id FROM '{str(data).format('sft_examples')}'").fetchall()}
    assert curated == set(prompts) and sft == {"parts", "plain"}
    lines = [json.loads(line) for path in (home.releases / "sft_examples" / "latest" / "openai").glob("*.jsonl")
             for line in path.read_text().splitlines()]
    parts = next(line for line in lines if isinstance(line["messages"][0]["content"], list))
    assert parts["messages"][0]["content"][1]["type"] == "image_url"  # content parts stay parts
