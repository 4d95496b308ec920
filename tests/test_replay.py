"""Counterfactual replay against an OpenAI-compatible server the tests start: the cap holds, retries work, the
cache prevents repeat calls, failures are recorded as failures, and graded answers reach router_examples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from flywheel import warehouse
from flywheel.settings import Home
from tests.support.arithmetic import published_home
from tests.test_cli import run_cli


@pytest.fixture(scope="module")
def replay_source(tmp_path_factory) -> Home:
    return published_home(tmp_path_factory.mktemp("replay"), prompts=40)


@pytest.fixture
def replay_home(replay_source: Home, tmp_path: Path) -> Home:
    shutil.copytree(replay_source.root, tmp_path / "home", symlinks=True)
    return Home(tmp_path / "home")


def _settings(path: Path, base_url: str, candidates: list[str], **changes) -> Path:
    document = {"budget_usd": 1.0, "concurrency": 4, "timeout_s": 5, "max_retries": 2, "prompts": 10,
                "max_tokens": 50,
                "candidates": [{"name": name, "base_url": base_url, "api_key_env": "REPLAY_TEST_KEY",
                                "price": {"input": 1.0, "output": 2.0}} for name in candidates],
                "judge": {"name": "judge-model", "base_url": base_url, "api_key_env": "REPLAY_TEST_KEY",
                          "price": {"input": 1.0, "output": 1.0}, "rubric": "Score 1-5."}, **changes}
    path.write_text(yaml.safe_dump(document))
    return path


def _replay(home: Home, settings: Path, *extra: str, check: bool = True):
    return run_cli("replay", "--settings", str(settings), *extra, home=home.root, check=check,
                   env={"REPLAY_TEST_KEY": "sk-test"})


def _replayed(home: Home) -> list[tuple]:
    with warehouse.session(home, read_only=True) as con:
        return con.execute("""
            SELECT i.model, i.status, f.source, f.success, i.metadata->>'$.source'
            FROM raw.interactions i LEFT JOIN raw.feedback f USING (request_id)
            WHERE list_contains(i.tags, 'replay') ORDER BY ALL""").fetchall()


def test_answers_are_graded_by_the_reference_and_reach_router_examples(replay_home, openai_server, tmp_path):
    settings = _settings(tmp_path / "replay.yaml", openai_server.base_url, ["calc-model", "echo-model"])
    result = _replay(replay_home, settings)
    assert "asked 20" in result.stderr and "failed 0" in result.stderr
    rows = _replayed(replay_home)
    assert len(rows) == 20
    assert {(m, s, ok) for m, _, s, ok, _ in rows} == {("calc-model", "replay-check:numeric", True),
                                                       ("echo-model", "replay-check:numeric", False)}
    assert {source for *_, source in rows} == {"replay"}
    from pipelines.launch import publish

    assert publish(replay_home).success
    with warehouse.session(replay_home, read_only=True) as con:
        known = dict(con.execute("""SELECT model, avg(quality_score) FROM marts.router_examples
                                    WHERE model IN ('calc-model', 'echo-model') GROUP BY 1""").fetchall())
    assert known == {"calc-model": 1.0, "echo-model": 0.0}


def test_a_candidate_named_by_its_alias_is_the_logged_snapshot(replay_home, openai_server, tmp_path):
    """The logs call it gpt-4o-mini; the settings name its dated snapshot: one model, asked nothing it answered."""
    settings = _settings(tmp_path / "replay.yaml", openai_server.base_url, ["gpt-4o-mini-2024-07-18", "calc-model"])
    result = _replay(replay_home, settings)
    assert "gpt-4o-mini-2024-07-18 is gpt-4o-mini in the logs" in result.stderr
    assert "asked 10" in result.stderr, result.stderr
    assert {model for model, *_ in _replayed(replay_home)} == {"calc-model"}


def test_nothing_is_paid_for_twice(replay_home, openai_server, tmp_path):
    settings = _settings(tmp_path / "replay.yaml", openai_server.base_url, ["calc-model"], prompts=5)
    _replay(replay_home, settings)
    before = len(openai_server.requests)
    # the marts are not rebuilt, so the same prompts still lack calc-model's answer: all come from the cache
    cache = replay_home.root / "replay" / "cache.sqlite"
    assert cache.exists()
    second = _replay(replay_home, settings)
    assert "asked 0, from cache 5" in second.stderr, second.stderr
    assert len(openai_server.requests) == before


def test_the_cap_holds(replay_home, openai_server, tmp_path):
    # a call's worst case (its prompt + max_tokens) must fit what is left; a few fit, the rest are not sent
    settings = _settings(tmp_path / "replay.yaml", openai_server.base_url, ["calc-model"], budget_usd=0.0001,
                         max_tokens=10, concurrency=2, judge=None)
    before = len(openai_server.requests)
    result = _replay(replay_home, settings)
    summary = result.stderr.replace("\n", " ")
    spent = float(summary.split("spent $")[1].split()[0])
    asked = int(summary.split("asked ")[1].split(",")[0])
    over = int(summary.split("over budget ")[1].split(";")[0])
    assert 0 < spent <= 0.0001
    assert asked > 0 and over > 0 and asked + over == 10, summary
    assert len(openai_server.requests) - before == asked


def test_retries_on_429_and_5xx_and_failures_are_recorded_as_failed_not_wrong(replay_home, openai_server,
                                                                              tmp_path):
    settings = _settings(tmp_path / "replay.yaml", openai_server.base_url, ["calc-model", "broken-model"],
                         prompts=2, concurrency=1, judge=None)
    openai_server.inject(429, 500)  # the first call is answered at the third attempt
    result = _replay(replay_home, settings)
    assert "asked 2" in result.stderr and "failed 2" in result.stderr, result.stderr
    rows = _replayed(replay_home)
    assert {(m, s) for m, s, *_ in rows} == {("calc-model", "ok"), ("broken-model", "error")}
    assert all(source is None for m, _, source, *_ in rows if m == "broken-model")  # no verdict on a failure
    from pipelines.launch import publish

    assert publish(replay_home).success
    with warehouse.session(replay_home, read_only=True) as con:
        broken = con.execute("SELECT count(*) FROM marts.router_examples WHERE model = 'broken-model'").fetchall()
    assert broken[0][0] == 0


def test_a_slow_reply_times_out_and_is_retried(replay_home, openai_server, tmp_path):
    settings = _settings(tmp_path / "replay.yaml", openai_server.base_url, ["calc-model"], prompts=1,
                         timeout_s=0.5, max_retries=1, judge=None)
    openai_server.inject("slow", slow_s=1.5)
    result = _replay(replay_home, settings)
    assert "asked 1" in result.stderr and "failed 0" in result.stderr, result.stderr


def test_without_a_reference_the_judge_grades_and_a_missing_key_is_named(openai_server, tmp_path):
    replay_home = published_home(tmp_path / "ungraded", prompts=5, graded=False)  # nothing to check against
    settings = _settings(tmp_path / "replay.yaml", openai_server.base_url, ["echo-model"], prompts=2)
    _replay(replay_home, settings)
    rows = _replayed(replay_home)
    assert {(s, ok) for _, _, s, ok, _ in rows} == {("replay-judge", None)}
    other = _settings(tmp_path / "other.yaml", openai_server.base_url, ["calc-model"], prompts=2)
    missing = run_cli("replay", "--settings", str(other), home=replay_home.root, check=False,
                      env={"REPLAY_TEST_KEY": ""})
    assert missing.returncode == 1 and "REPLAY_TEST_KEY" in missing.stderr


def test_a_pairwise_judge_asks_both_orders_so_a_position_bias_decides_nothing(openai_server, tmp_path):
    """The test judge prefers a real answer to an echo, and between two real answers the one shown first: the
    echo loses in both orders (1 of 3), the real answer wins once and loses once, a tie (2 of 3)."""
    replay_home = published_home(tmp_path / "ungraded", prompts=4, graded=False)
    settings = _settings(tmp_path / "replay.yaml", openai_server.base_url, ["echo-model", "calc-model"], prompts=2)
    document = yaml.safe_load(settings.read_text())
    document["judge"]["mode"] = "pairwise"
    settings.write_text(yaml.safe_dump(document))
    before = len(openai_server.requests)
    _replay(replay_home, settings)
    judged = [r for r in openai_server.requests[before:] if r["model"] == "judge-model"]
    assert len(judged) == 2 * 2 * 2  # two prompts, two candidates, both orders
    with warehouse.session(replay_home, read_only=True) as con:
        verdicts = con.execute("""
            SELECT i.model, f.source, f.rating, f.rating_scale FROM raw.interactions i JOIN raw.feedback f
            USING (request_id) WHERE list_contains(i.tags, 'replay') ORDER BY ALL""").fetchall()
    assert verdicts == [("calc-model", "replay-judge:pairwise", 2.0, 3.0)] * 2 + \
        [("echo-model", "replay-judge:pairwise", 1.0, 3.0)] * 2


def test_bad_settings_name_the_file_and_the_key(replay_home, tmp_path):
    path = tmp_path / "replay.yaml"
    path.write_text(json.dumps({"candidates": [{"name": "x", "base_url": "http://127.0.0.1:1/v1"}],
                                "budjet_usd": 3}))
    result = run_cli("replay", "--settings", str(path), home=replay_home.root, check=False)
    assert result.returncode == 1 and "budjet_usd" in result.stderr and str(path) in result.stderr


def test_the_replay_job_plans_dry_then_spends_under_its_cap_with_figures_in_dagster_metadata(
        replay_home, openai_server, tmp_path, monkeypatch):
    from pipelines.definitions import definitions_for
    from pipelines.launch import prepare_instance

    monkeypatch.setenv("REPLAY_TEST_KEY", "sk-test")
    settings = _settings(tmp_path / "replay.yaml", openai_server.base_url, ["calc-model"])
    defs = definitions_for(str(replay_home.root))
    instance = prepare_instance(replay_home)
    job = defs.resolve_job_def("replay_job")

    def launch(**config):
        result = job.execute_in_process(instance=instance, run_config={
            "ops": {"replay__answers": {"config": {"settings": str(settings), **config}}}})
        assert result.success
        return result.asset_materializations_for_node("replay__answers")[0].metadata

    before = len(openai_server.requests)
    planned = launch(dry_run=True, prompts=4)
    assert (planned["replayed"].value, planned["prompts"].value, planned["answers_missing"].value) == (False, 4, 4)
    assert planned["worst_case_usd"].value > 0 and len(openai_server.requests) == before
    assert _replayed(replay_home) == []

    spent = launch(prompts=4, budget_usd=0.5)
    assert (spent["replayed"].value, spent["asked"].value, spent["failed"].value) == (True, 4, 0)
    assert 0 < spent["spent_usd"].value <= 0.5 and spent["cap_usd"].value == 0.5
    assert "| check:numeric | 4 |" in spent["graded"].value
    assert [(m, s, ok) for m, _, s, ok, _ in _replayed(replay_home)] == [("calc-model", "replay-check:numeric",
                                                                          True)] * 4
