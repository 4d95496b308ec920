"""The Dagster definitions load, and their asset keys change only on purpose."""

from __future__ import annotations

import ast
from pathlib import Path

import dagster as dg

from flywheel.settings import REPO_ROOT

EXPECTED_ASSET_KEYS = {
    "landing/files",
    "raw/interactions",
    "raw/feedback",
    "raw/quarantine",
    "reference/model_prices",
    "staging/stg_interactions",
    "staging/stg_feedback",
    "intermediate/int_redaction_counts",
    "intermediate/int_feedback_by_request",
    "intermediate/int_interactions",
    "intermediate/int_cluster_members",
    "intermediate/int_labeling_candidates",
    "dedup/clusters",
    "labeling/queue",
    "labeling/labels",
    "intermediate/int_signals",
    "curation/eval_selection",
    "curation/splits",
    "marts/curated_interactions",
    "marts/sft_examples",
    "marts/preference_pairs",
    "marts/router_examples",
    "marts/eval_items",
    "releases/curated_interactions",
    "releases/sft_examples",
    "releases/preference_pairs",
    "releases/router",
    "releases/router_examples",
    "releases/eval_items",
    "replay/answers",
}


def test_all_definitions_load():
    from pipelines.definitions import defs

    repository = defs.get_repository_def()
    repository.load_all_definitions()
    assert {j.name for j in repository.get_all_jobs()} >= {"ingest_job", "build_job", "labeling_job",
                                                           "pull_labels_job", "publish_job", "replay_job"}
    assert {s.name for s in repository.sensor_defs} == {"landing_sensor", "build_sensor", "publish_after_new_labels"}
    assert {s.name for s in repository.schedule_defs} == {"daily_ingest", "daily_labeling", "pull_labels",
                                                         "weekly_publish"}


def test_sql_model_assets_take_their_upstreams_from_the_sql():
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey(["intermediate", "int_interactions"])).parent_keys}
    assert parents == {"staging/stg_interactions", "intermediate/int_feedback_by_request"}
    staging = graph.get(dg.AssetKey(["staging", "stg_interactions"]))
    assert isinstance(staging.partitions_def, dg.DynamicPartitionsDefinition)  # days come from the data
    assert staging.backfill_policy == dg.BackfillPolicy.single_run()  # a range of days is one run
    assert graph.get(dg.AssetKey(["staging", "stg_feedback"])).partitions_def is None


def test_the_code_location_has_exactly_one_definitions_object_at_module_scope():
    # `dagster dev -m pipelines.definitions` refuses a module with two.
    import pipelines.definitions as module

    assert [name for name, value in vars(module).items() if isinstance(value, dg.Definitions)] == ["defs"]


def test_asset_keys_snapshot():
    from pipelines.definitions import defs

    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == EXPECTED_ASSET_KEYS


def test_the_library_never_imports_dagster_nor_the_wiring():
    offenders = []
    for path in (REPO_ROOT / "flywheel").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(REPO_ROOT)}: {n}" for n in names
                          if n.split(".")[0] in ("dagster", "pipelines") or n.startswith("dagster_")]
    assert offenders == []


def test_settings_are_read_from_the_environment_in_one_place_and_documented():
    import re

    from flywheel.settings import ENVIRONMENT

    readers = []
    for path in [*(REPO_ROOT / "flywheel").rglob("*.py"), *(REPO_ROOT / "pipelines").rglob("*.py")]:
        if path.name == "settings.py" or "argilla_local" in path.parts:  # the local server's child process
            continue
        text = path.read_text()
        readers += [f"{path.relative_to(REPO_ROOT)}: {m}"
                    for m in re.findall(r"environ(?:\.get)?[\[(]\s*[\"']((?:FLYWHEEL|ARGILLA)_\w+)", text)]
        readers += [f"{path.relative_to(REPO_ROOT)}: getenv" for _ in re.findall(r"getenv\(", text)]
    assert readers == []
    readme = (REPO_ROOT / "README.md").read_text()
    assert [name for name in ENVIRONMENT if f"`{name}`" not in readme] == []


def test_dagster_yaml_keeps_telemetry_off_and_serialises_warehouse_writers():
    import yaml

    config = yaml.safe_load(Path(REPO_ROOT / "dagster.yaml").read_text())
    assert config["telemetry"] == {"enabled": False}
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {"key": "flywheel/warehouse", "value": "write", "limit": 1} in limits
    assert config["concurrency"]["pools"]["default_limit"] == 1
