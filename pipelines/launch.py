"""Starting Dagster for flywheel: the instance under FLYWHEEL_HOME, the main job, and the UI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import dagster as dg

from flywheel.settings import REPO_ROOT, Home


def prepare_instance(home: Home) -> dg.DagsterInstance:
    """Point DAGSTER_HOME at FLYWHEEL_HOME/dagster, with the project's dagster.yaml."""
    home.ensure()
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home.dagster_home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home.dagster_home)
    os.environ["FLYWHEEL_HOME"] = str(home.root)
    return dg.DagsterInstance.get()


def run_main_job(home: Home) -> dg.ExecuteInProcessResult:
    instance = prepare_instance(home)
    from pipelines.definitions import defs  # after FLYWHEEL_HOME is set: resources read it

    job = defs.resolve_job_def("flywheel_job")
    quiet = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    return job.execute_in_process(instance=instance, run_config=quiet, tags={"flywheel/launched_by": "flywheel run"})


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
