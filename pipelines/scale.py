"""The scale-out profile's moving parts: the Celery executor that sends Dagster's steps to a broker, the workers
that run them (`flywheel worker`, on any machine that reaches the broker, PostgreSQL and the lake's folder), and
builds of many days as concurrent runs (a stretch of days each) whose steps the workers share.

Dagster's own engines do the work: dagster-celery's executor and worker app, dagster-postgres for the instance.
What flywheel adds is their configuration, derived from the same settings as everything else (FLYWHEEL_*)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg

from flywheel.days import DayRange
from flywheel.settings import REPO_ROOT, Home, private_folder

QUEUE = "dagster"  # dagster-celery routes every step to this queue


def celery_settings(home: Home) -> dict[str, object]:
    broker = home.scale.broker_url
    return {
        "broker_url": broker,
        # results go back the way tasks came: over AMQP itself, or to the same Redis
        "result_backend": "rpc://" if broker.startswith(("amqp", "pyamqp")) else broker,
        # a step is acknowledged when it has run, not when a worker took it: a worker killed mid-step leaves its
        # step to the next worker, which runs it again (a day's write is replaced whole, so that is safe)
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,  # a long step does not hold a second one hostage on the same worker
    }


def celery_executor(home: Home) -> dg.ExecutorDefinition:
    from dagster_celery import celery_executor as dagster_celery_executor

    settings = celery_settings(home)
    return dagster_celery_executor.configured(
        {"broker": settings["broker_url"], "backend": settings["result_backend"],
         "config_source": {k: v for k, v in settings.items() if k not in ("broker_url", "result_backend")}},
        name="celery")


def _config_module(home: Home) -> Path:
    """The worker's Celery settings as the module dagster-celery's worker app imports (dagster_celery_config)."""
    folder = private_folder(home.dagster_home / "celery")
    lines = [f"{name} = {value!r}" for name, value in celery_settings(home).items()]
    (folder / "dagster_celery_config.py").write_text("# Written by `flywheel worker`.\n" + "\n".join(lines) + "\n")
    return folder


def worker_process(home: Home, *, name: str, concurrency: int = 1, loglevel: str = "WARNING",
                   **popen: object) -> subprocess.Popen:
    """Start a Celery worker for Dagster's steps (dagster-celery's app) with this home's settings."""
    from pipelines.launch import prepare_instance

    prepare_instance(home)
    env = {**os.environ, **home.environment(), "DAGSTER_HOME": str(home.dagster_home),
           "PYTHONPATH": os.pathsep.join([str(_config_module(home)), str(REPO_ROOT),
                                          *filter(None, [os.environ.get("PYTHONPATH")])])}
    command = [sys.executable, "-m", "celery", "-A", "dagster_celery.app", "worker", "-Q", QUEUE,
               "-n", f"{name}@%h", "--concurrency", str(concurrency), "--loglevel", loglevel,
               "--without-gossip", "--without-mingle"]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, **popen)  # type: ignore[arg-type]


def build_job() -> dg.JobDefinition:
    """The build job as the celery workers rebuild it: from FLYWHEEL_HOME as each process finds it."""
    from pipelines.definitions import definitions_for

    return definitions_for().resolve_job_def("build_job")


@dataclass(frozen=True)
class DayRun:
    day: str  # the days it built, as DayRange prints them ("" for the assets not partitioned by day)
    run_id: str
    success: bool
    error: str = ""


def _adopt(environment: dict[str, str]) -> None:
    os.environ.update(environment)  # the run's process sees the home and profile its parent was given


def _run_day(day: str, tags: dict[str, str]) -> DayRun:
    """A run of the build job: the partitions of a stretch of days ("first..last", or one day), or (day "") the
    stale assets not partitioned by day whose keys `tags` carries under "flywheel/assets" (comma-separated)."""
    from pipelines.builds import range_tags
    from pipelines.launch import QUIET, prepare_instance

    home = Home.from_env()
    with prepare_instance(home) as instance:
        selection = [dg.AssetKey.from_user_string(k) for k in tags.pop("flywheel/assets", "").split(",") if k]
        result = dg.execute_job(dg.reconstructable(build_job), instance, run_config=QUIET,
                                tags={**tags, **(range_tags(DayRange.parse(*_ends(day))) if day else {})},
                                asset_selection=selection or None, raise_on_error=False)
        return DayRun(day, result.run_id, result.success, "" if result.success else _why(instance, result.run_id))


def _why(instance: dg.DagsterInstance, run_id: str) -> str:
    """The first line of each error the run's steps (or the run itself) ended on."""
    from pipelines.launch import first_line_of

    reasons = []
    for entry in instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_FAILURE,
                                                   dg.DagsterEventType.RUN_FAILURE}):
        why = first_line_of(getattr(entry.dagster_event.event_specific_data, "error", None), chars=300)
        if why:
            reasons.append(f"{entry.dagster_event.step_key or 'run'}: {why}")
    return "; ".join(reasons)


def workers_answering(home: Home, timeout_s: float = 3.0) -> list[str]:
    """The names of the Celery workers that answer on the broker now."""
    from celery import Celery

    app = Celery("dagster", broker=home.scale.broker_url)
    try:
        return sorted(name for reply in app.control.ping(timeout=timeout_s) or [] for name in reply)
    finally:
        app.close()


def _ends(days: str) -> tuple[str, str]:
    first, _, last = days.partition("..")
    return first, last or first


def stretches(days: list[date], parts: int) -> list[DayRange]:
    """`days` (with data, in order) cut into at most `parts` runs of neighbouring days, as even as they come: a
    worker's step has a start-up cost, so each run builds as many days as the workers' share allows."""
    parts = max(1, min(parts, len(days)))
    size, extra = divmod(len(days), parts)
    out, start = [], 0
    for n in range(parts):
        end = start + size + (n < extra)
        out.append(DayRange(days[start], days[end - 1]))
        start = end
    return out


def build_days(home: Home, days: list[DayRange], *, parallel: int, tags: dict[str, str] | None = None,
               other_assets: list[dg.AssetKey] | None = None,
               on_run: Callable[[DayRun], None] | None = None) -> list[DayRun]:
    """A Dagster run per stretch of days, `parallel` at a time, each run's steps executed by the Celery workers;
    then one run of `other_assets` (not partitioned by day), if any."""
    from pipelines.launch import prepare_instance
    from pipelines.shared import WAREHOUSE_POOL

    with prepare_instance(home) as instance:
        # the pool's limit row is made here, once: runs that each find it missing make it at the same time, and on
        # PostgreSQL all but one of them then fail (Dagster inserts, then updates, in one transaction; so this is
        # only done while the row is missing)
        if WAREHOUSE_POOL not in instance.event_log_storage.get_concurrency_keys():
            instance.event_log_storage.initialize_concurrency_limit_to_default(WAREHOUSE_POOL)
    runs = []
    context = multiprocessing.get_context("spawn")  # each run orchestrates from a process of its own
    with ProcessPoolExecutor(max(1, min(parallel, len(days))), mp_context=context, initializer=_adopt,
                             initargs=(home.environment(),)) as pool:
        for run in pool.map(_run_day, [str(d) for d in days], [dict(tags or {}) for _ in days]):
            runs.append(run)
            if on_run:
                on_run(run)
        if other_assets and all(run.success for run in runs):
            names = ",".join(key.to_user_string() for key in other_assets)
            run = pool.submit(_run_day, "", {**(tags or {}), "flywheel/assets": names}).result()
            runs.append(run)
            if on_run:
                on_run(run)
    return runs
