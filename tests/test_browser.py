"""An annotator signs in to the real Argilla UI in headless Chromium, submits a label, and the label reaches
DuckDB after a pull. Needs Debian's chromium (/usr/bin/chromium); .ci/run installs it."""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
import uuid

import argilla as rg
import pytest

from flywheel.labeling import sampling, sync
from flywheel.labeling.datasets import RESPONSE_REVIEW, DatasetSpec, load_sampling, load_spec

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None,
                                reason="Debian's chromium is not installed (apt-get install chromium)")


def test_an_annotator_labels_in_the_ui_and_the_label_lands_in_duckdb(warehouse_copy, argilla_target, tmp_path):
    from playwright.sync_api import sync_playwright

    con, target = warehouse_copy, argilla_target
    spec = load_spec(RESPONSE_REVIEW)
    spec = DatasetSpec(spec.kind, f"ui-{uuid.uuid4().hex[:8]}", spec.config, spec.path)
    sampling.sample_response_review(con, spec, load_sampling()["response_review"], budget=3)
    sync.push(con, target, spec)
    owner = target.client()
    name, password = f"ui-{uuid.uuid4().hex[:6]}", "ui-annotator-password"
    user = rg.User(username=name, password=password, role="annotator", client=owner).create()
    owner.workspaces(target.workspace).add_user(user)
    dataset = owner.datasets(name=spec.name, workspace=target.workspace)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        auth = base64.b64encode(f"{name}:{password}".encode()).decode()
        page.goto(f"{target.api_url}/sign-in?auth={auth}")
        page.wait_for_url(re.compile(r"/$"), timeout=30_000)
        page.goto(f"{target.api_url}/dataset/{dataset.id}/annotation-mode")
        page.locator('label[for="quality_4"]').wait_for(timeout=30_000)
        for option in ("quality_4", "verdict_bad", "issues_wrong"):
            # Suggestions pre-select options, and clicking a selected option clears it.
            if not page.locator(f"#{option}").is_checked():
                page.locator(f'label[for="{option}"]').click()
        page.get_by_role("button", name="Submit").click()
        page.screenshot(path=str(tmp_path / "after-submit.png"))
        deadline, labels = time.monotonic() + 20, []
        while time.monotonic() < deadline and not labels:
            sync.pull(con, target, spec)
            labels = con.execute("SELECT username, status, answers, request_id FROM labeling.labels "
                                 "WHERE dataset = ?", [spec.name]).fetchall()
            time.sleep(0.5)
        browser.close()

    assert len(labels) == 1, labels
    username, status, answers, request_id = labels[0]
    assert (username, status) == (name, "submitted")
    answers = json.loads(answers)
    assert (answers["quality"], answers["verdict"]) == (4, "bad") and "wrong" in answers["issues"]
    assert con.execute("SELECT count(*) FROM intermediate.int_interactions WHERE request_id = ?",
                       [request_id]).fetchone()[0] == 1
