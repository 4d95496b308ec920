"""Starting Dagster for flywheel: the instance under FLYWHEEL_HOME, the main job, and the UI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from flywheel.settings import REPO_ROOT, Home


def prepare_instance(home: Home) -> dg.DagsterInstance:
    """Point DAGSTER_HOME at FLYWHEEL_HOME/dagster, with the project's dagster.yaml."""
    home.ensure()
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home.dagster_home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home.dagster_home)
    os.environ["FLYWHEEL_HOME"] = str(home.root)
    return dg.DagsterInstance.get()


@dataclass
class MainJobResult:
    runs: list[dg.ExecuteInProcessResult]
    days: list[str]

    @property
    def success(self) -> bool:
        return all(run.success for run in self.runs)


def run_main_job(home: Home, on_run: Callable[[str], None] | None = None, labeling: bool = True) -> MainJobResult:
    """Ingest the landing folder, build the SQL models for every day the new data touched, then queue samples
    in Argilla and pull labels (`labeling`): the same runs the sensors and schedules start in
    `flywheel dagster`, executed here in-process and recorded in the instance."""
    instance = prepare_instance(home)
    from pipelines.definitions import defs  # after FLYWHEEL_HOME is set: resources read it

    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    tags = {"flywheel/launched_by": "flywheel run"}
    # raise_on_error=False: a failed run is reported (step and reason), not raised as a traceback.
    ingest = defs.resolve_job_def("ingest_job").execute_in_process(instance=instance, run_config=quiet, tags=tags,
                                                                   raise_on_error=False)
    runs, days = [ingest], []
    if not ingest.success and on_run:
        on_run(f"ingest: {_outcome(ingest)} (run {ingest.run_id})")
    if ingest.success:
        for event in ingest.asset_materializations_for_node("raw_events"):
            if event.asset_key == dg.AssetKey(["raw", "interactions"]):
                days = list(event.metadata["days_touched"].value) if "days_touched" in event.metadata else []
        if on_run:
            on_run(f"ingest run {ingest.run_id} done; building {len(days)} day(s)")
        models = defs.resolve_job_def("daily_models_job")
        for day in days:
            run = models.execute_in_process(instance=instance, run_config=quiet, tags=tags, partition_key=day,
                                            raise_on_error=False)
            runs.append(run)
            if on_run:
                on_run(f"day {day}: {_outcome(run)} (run {run.run_id})")
            if not run.success:
                break
    if labeling and all(run.success for run in runs):
        run = defs.resolve_job_def("labeling_job").execute_in_process(instance=instance, run_config=quiet, tags=tags,
                                                                      raise_on_error=False)
        runs.append(run)
        if on_run:
            on_run(f"labeling: {_outcome(run)} (run {run.run_id})")
    return MainJobResult(runs, days)


def _outcome(run: dg.ExecuteInProcessResult) -> str:
    """'ok', or FAILED with each failed step and the first line of its error (the rest is in the UI)."""
    if run.success:
        return "ok"
    failures = [f"{event.step_key}: {event.step_failure_data.error.message.strip().splitlines()[0]}"
                for event in run.get_step_failure_events() if event.step_failure_data.error]
    return "FAILED" + (" - " + "; ".join(failures) if failures else "")


def serve(home: Home, port: int) -> int:
    prepare_instance(home)
    command = [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port),
               "-m", "pipelines.definitions"]
    # dagster dev ignores SIGINT/SIGTERM when started with them ignored; restore the defaults.
    process = subprocess.Popen(command, cwd=home.dagster_home,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait()
