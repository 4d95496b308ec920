"""Starting Dagster for flywheel: the instance under FLYWHEEL_HOME, the build, the main job, and the UI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

import dagster as dg
import psutil
import yaml

from flywheel import warehouse
from flywheel.processes import alive, supervise
from flywheel.settings import REPO_ROOT, Home

# The CLI prints its own one-line summary of each run; Dagster's console log (with stack traces) is in the UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
# Runs started by this process carry its identity, so a later command can tell a run whose process died.
PROCESS_TAG = "flywheel/process"


def prepare_instance(home: Home) -> dg.DagsterInstance:
    """The Dagster instance in FLYWHEEL_HOME/dagster, with the project's dagster.yaml (its storage pointed at
    that folder), opened without changing this process's environment."""
    home.ensure()
    config = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    config["storage"]["custom"]["config"] = {"base_dir": str(home.dagster_home)}
    header = "# Written by flywheel from the project's dagster.yaml (storage pointed at this folder).\n"
    if home.lake:
        # Runs, events and schedules in PostgreSQL, where the webserver, the daemon and every worker reach them.
        # Writers of the lake meet on row locks, not one file, so steps of several runs go at once.
        url = home.scale.postgres_url
        for scheme in ("postgresql://", "postgres://"):  # SQLAlchemy's default driver for these is not installed
            if url.startswith(scheme):
                url = "postgresql+psycopg2://" + url.removeprefix(scheme)
        config["storage"] = {"postgres": {"postgres_url": url}}
        config["concurrency"] = {"runs": {"max_concurrent_runs": 8}, "pools": {"default_limit": 8}}
        header = "# Written by flywheel from the project's dagster.yaml: the scale profile (FLYWHEEL_PROFILE=scale).\n"
    (home.dagster_home / "dagster.yaml").write_text(header + yaml.safe_dump(config, sort_keys=False))
    return dg.DagsterInstance.from_config(str(home.dagster_home))


def _process_identity(pid: int) -> str | None:
    """pid and start time: a pid reused by a later process does not pass for the one that started a run."""
    try:
        return f"{pid}:{psutil.Process(pid).create_time():.3f}"
    except psutil.NoSuchProcess:
        return None


def fail_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs a flywheel command started whose process is gone (killed, crashed), and free the
    concurrency slots they held: otherwise later runs wait for them forever. Returns their run ids."""
    abandoned = []
    for run in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING,
                                                         dg.DagsterRunStatus.NOT_STARTED])):
        identity = run.tags.get(PROCESS_TAG)
        if not identity:
            continue  # started by the Dagster daemon or UI: its run monitoring looks after it
        pid = int(identity.split(":")[0])
        if alive(pid) and _process_identity(pid) == identity:
            continue
        instance.report_run_failed(run, f"the process that ran it ({pid}) is gone")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        abandoned.append(run.run_id)
    return abandoned


def _tags(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"flywheel/launched_by": "flywheel", PROCESS_TAG: _process_identity(os.getpid()), **(extra or {})}


def _outcome(run: dg.ExecuteInProcessResult) -> str:
    """'ok', or FAILED with each failed step and the first line of its error (the rest is in the UI)."""
    if run.success:
        return "ok"
    failures = [f"{event.step_key}: {why}" for event in run.get_step_failure_events()
                if (why := first_line_of(event.step_failure_data.error))]
    return "FAILED" + (" - " + "; ".join(failures) if failures else "")


def first_line_of(error, chars: int = 0) -> str:
    """The first line of the exception our code raised, not of Dagster's wrappers around it ("" for none); with
    `chars`, its whole message on one line, cut there (a lake's refused commit says why on its second line)."""
    while error is not None and error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    if error is None or not error.message.strip():
        return ""
    return " ".join(error.message.split())[:chars] if chars else error.message.strip().splitlines()[0]


@dataclass
class RunsResult:
    """The Dagster runs a command made, and the days they built."""

    runs: list[dg.ExecuteInProcessResult] = field(default_factory=list)
    days_built: int = 0
    days_with_data: int = 0

    @property
    def success(self) -> bool:
        return all(run.success for run in self.runs)


@contextmanager
def _instance(home: Home, say: Callable[[str], None]) -> Iterator[dg.DagsterInstance]:
    """The home's instance, rid of runs left by dead flywheel processes, disposed at the end (its SQLite files
    are left checkpointed)."""
    with prepare_instance(home) as instance:
        for run_id in fail_abandoned_runs(instance):
            say(f"run {run_id} was left running by a process that is gone: marked failed, its slot freed")
        yield instance


def build(home: Home, *, only: list[date] | None = None, since: date | None = None, until: date | None = None,
          everything: bool = False, say: Callable[[str], None] | None = None,
          instance: dg.DagsterInstance | None = None) -> RunsResult:
    """Build whatever days need it (or the chosen ones), each range of days in one Dagster run, recorded in the
    instance the UI and the sensors read."""
    from pipelines.builds import plan_build, range_tags
    from pipelines.definitions import definitions_for
    from pipelines.defs.build.jobs import BUILD_ASSETS

    say = say or (lambda message: None)
    if instance is None:
        with _instance(home, say) as mine:
            return build(home, only=only, since=since, until=until, everything=everything, say=say, instance=mine)
    if not warehouse.exists(home):
        return RunsResult()
    with warehouse.session(home, on_wait=say) as con:
        plan = plan_build(instance, con, BUILD_ASSETS, only=only, since=since, until=until, everything=everything)
    result = RunsResult(days_with_data=len(plan.days_with_data))
    job = definitions_for(str(home.root)).resolve_job_def("build_job")
    if plan.empty:
        say(f"all {len(plan.days_with_data)} day(s) with data are built from the latest data; nothing to build")
        return result
    if home.lake:
        return _build_on_workers(home, plan, result, say)
    for days in plan.ranges:
        run = job.execute_in_process(instance=instance, run_config=QUIET, tags=_tags(range_tags(days)),
                                     raise_on_error=False)
        result.runs.append(run)
        say(f"built {days}: {_outcome(run)} (run {run.run_id})")
        if not run.success:
            return result
    if plan.other_assets:
        run = job.execute_in_process(instance=instance, run_config=QUIET, tags=_tags(),
                                     asset_selection=plan.other_assets, raise_on_error=False)
        result.runs.append(run)
        say(f"built {', '.join(k.to_user_string() for k in plan.other_assets)}: {_outcome(run)} (run {run.run_id})")
    result.days_built = plan.days
    return result


def _build_on_workers(home: Home, plan, result: RunsResult, say: Callable[[str], None]) -> RunsResult:
    """The scale profile: the days cut into a stretch per worker, their runs at once, their steps on the workers."""
    from pipelines.scale import build_days, stretches, workers_answering

    workers = workers_answering(home)
    if not workers:
        raise RuntimeError(f"no flywheel worker answers on {home.scale.broker_url}: start one or more with "
                           "`flywheel worker` (FLYWHEEL_BROKER_URL names the broker)")
    days = [day for day in plan.days_with_data if any(r.first <= day <= r.last for r in plan.ranges)]
    runs_of_days = stretches(days, len(workers))
    say(f"building {len(days)} day(s) in {len(runs_of_days)} concurrent run(s) on {len(workers)} worker(s): "
        f"{', '.join(workers)}")

    def report(run) -> None:
        say(f"built {run.day or 'whole-history assets'}: {'ok' if run.success else 'FAILED - ' + run.error} "
            f"(run {run.run_id})")

    runs = build_days(home, runs_of_days, parallel=len(workers), tags=_tags(), other_assets=plan.other_assets,
                      on_run=report)
    result.runs.extend(runs)  # type: ignore[arg-type]  # each has .success and .run_id, as in-process results
    result.days_built = plan.days if all(run.success for run in runs) else 0
    return result


def run_main_job(home: Home, on_run: Callable[[str], None] | None = None, labeling: bool = True) -> RunsResult:
    """Ingest the landing folder, build every day that needs it (whichever way its data came in), then queue
    samples in Argilla and pull labels (`labeling`): the runs the sensors and schedules start in
    `flywheel dagster`, executed here in-process and recorded in the instance."""
    say = on_run or (lambda message: None)
    with _instance(home, say) as instance:
        return _main_job(home, instance, say, labeling)


def _main_job(home: Home, instance: dg.DagsterInstance, say: Callable[[str], None], labeling: bool) -> RunsResult:
    from pipelines.definitions import definitions_for

    defs = definitions_for(str(home.root))
    # raise_on_error=False: a failed run is reported (step and reason), not raised as a traceback.
    ingest = defs.resolve_job_def("ingest_job").execute_in_process(instance=instance, run_config=QUIET, tags=_tags(),
                                                                   raise_on_error=False)
    say(f"ingest: {_outcome(ingest)}{_ingest_summary(ingest)} (run {ingest.run_id})")
    runs = [ingest]
    built = RunsResult()
    if ingest.success:
        built = build(home, say=say, instance=instance)
        runs += built.runs
    if labeling and all(run.success for run in runs):
        run = defs.resolve_job_def("labeling_job").execute_in_process(instance=instance, run_config=QUIET,
                                                                      tags=_tags(), raise_on_error=False)
        runs.append(run)
        say(f"labeling: {_outcome(run)} (run {run.run_id})")
    if all(run.success for run in runs) and warehouse.exists(home):
        if _published_from_the_same(home, instance):
            say("publish: nothing changed since the last publish; no new release")
            return RunsResult(runs, built.days_built, built.days_with_data)
        run = _publish_run(home, instance)
        runs.append(run)
        say(f"publish: {_outcome(run)}{_publish_summary(run)} (run {run.run_id})")
    return RunsResult(runs, built.days_built, built.days_with_data)


def _publish_run(home: Home, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    from pipelines.definitions import definitions_for

    job = definitions_for(str(home.root)).resolve_job_def("publish_job")
    return job.execute_in_process(instance=instance, run_config=QUIET, tags=_tags(), raise_on_error=False)


def publish(home: Home, say: Callable[[str], None] | None = None) -> RunsResult:
    """Build what needs building, then rebuild the marts and publish a release of each dataset that changed."""
    say = say or (lambda message: None)
    with _instance(home, say) as instance:
        built = build(home, say=say, instance=instance)
        if not built.success or not warehouse.exists(home):
            return built
        if not built.runs and _published_from_the_same(home, instance):
            say("nothing changed since the last publish (no new data, labels, rules or code): no new release")
            return built
        run = _publish_run(home, instance)
        say(f"publish: {_outcome(run)}{_publish_summary(run)} (run {run.run_id})")
        return RunsResult([*built.runs, run], built.days_built, built.days_with_data)


def _published_from_the_same(home: Home, instance: dg.DagsterInstance) -> bool:
    """Whether every release asset's last materialization was made from what the warehouse holds now."""
    from flywheel.publish import DATASETS, inputs_stamp
    from pipelines.builds import DATA_VERSION_TAG

    with warehouse.session(home, read_only=True) as con:
        stamp = inputs_stamp(con)
    for name in DATASETS:
        event = instance.get_latest_materialization_event(dg.AssetKey(["releases", name]))
        tags = event.asset_materialization.tags if event and event.asset_materialization else {}
        if (tags or {}).get(DATA_VERSION_TAG) != stamp:
            return False
    return True


def _publish_summary(run: dg.ExecuteInProcessResult) -> str:
    """', sft_examples v0002 (1,234 rows), router_examples unchanged (v0001)' from the release assets' metadata."""
    if not run.success:
        return ""
    parts = []
    for event in run.get_asset_materialization_events():
        key, metadata = event.asset_key, event.step_materialization_data.materialization.metadata
        if key.path[0] != "releases":
            continue
        if key.path[-1] == "router":
            parts.append(f"router {metadata['router_version'].value}" if metadata["trained"].value
                         else "no router yet")
            continue
        if metadata["published"].value:
            parts.append(f"{key.path[-1]} {metadata['version'].value} ({metadata['rows_total'].value:,} rows)")
        else:
            latest = metadata["latest"].value
            parts.append(f"{key.path[-1]} unchanged ({latest})" if latest else f"{key.path[-1]} has no rows yet")
    return ", " + ", ".join(parts) if parts else ""


def _ingest_summary(run: dg.ExecuteInProcessResult) -> str:
    """', 2 new file(s): 1,992 interactions, 584 feedback, 8 lines quarantined (...)' from the run's metadata."""
    if not run.success:
        return ""
    new = {event.asset_key.path[-1]: event.metadata for event in run.asset_materializations_for_node("raw_events")}
    files = new["interactions"]["files_new"].value
    if not files:
        return ", no new files"
    counts = {table: new[table]["rows_new"].value for table in ("interactions", "feedback", "quarantine")}
    text = (f", {files} new file(s): {counts['interactions']:,} interactions, {counts['feedback']:,} feedback, "
            f"{counts['quarantine']:,} lines quarantined")
    if counts["quarantine"]:
        text += ' (why: flywheel sql "SELECT source_file, line_no, reason FROM raw.quarantine")'
    damaged = new["interactions"]["files_damaged"].value if "files_damaged" in new["interactions"] else 0
    if damaged:
        text += (f"; {damaged} damaged file(s) kept what could be read (why: flywheel sql \"SELECT path, outcome, "
                 "reason FROM raw.ingest_files WHERE reason IS NOT NULL\")")
    return text


WORKSPACE = """# Written by `flywheel dagster`: the code location is called flywheel.
load_from:
  - python_module:
      module_name: pipelines.definitions
      location_name: flywheel
      working_directory: {root}
"""


def serve(home: Home, port: int) -> int:
    prepare_instance(home)
    workspace = home.dagster_home / "workspace.yaml"
    workspace.write_text(WORKSPACE.format(root=REPO_ROOT))
    command = [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(workspace)]
    # `dagster dev` announces its successor (`dg dev`, from another package) at every start: not for our users.
    env = {**os.environ, "PYTHONWARNINGS": "ignore:Function `dev_command` is superseded",
           "DAGSTER_HOME": str(home.dagster_home), **home.environment()}
    # dagster dev ignores SIGINT/SIGTERM when started with them ignored; restore the defaults.
    return supervise(subprocess.Popen(command, cwd=home.dagster_home, env=env,
                                      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)))
