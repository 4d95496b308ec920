"""The ingest job, the sensor that runs it when files land, and the daily schedule."""

from __future__ import annotations

import hashlib
import json

import dagster as dg

from flywheel import warehouse
from flywheel.ingest import handled_since_modified
from flywheel.ingest.sources import is_supported
from flywheel.settings import Home
from pipelines.shared import WAREHOUSE_WRITE_TAGS

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("raw"),
    description="Ingest every new file in the landing folder into the raw layer.",
    tags=WAREHOUSE_WRITE_TAGS,
    executor_def=dg.in_process_executor,  # its steps write one DuckDB file in turn: no process per step
)

daily_ingest_schedule = dg.ScheduleDefinition(
    name="daily_ingest",
    job=ingest_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 03:00 UTC: pick up anything the sensor missed (build_sensor then builds its days).",
)


def _fingerprints(home: Home) -> dict[str, list[int]]:
    if not home.landing.exists():
        return {}
    found = {}
    for path in home.landing.rglob("*"):
        if path.is_file() and is_supported(path) and not any(p.startswith(".") for p in path.parts[-2:]):
            stat = path.stat()
            found[str(path.relative_to(home.landing))] = [stat.st_size, stat.st_mtime_ns]
    return found


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts an ingest run when new or changed files appear in FLYWHEEL_HOME/landing.",
)
def landing_sensor(context: dg.SensorEvaluationContext):
    home = Home.from_env()
    current = _fingerprints(home)
    seen = json.loads(context.cursor) if context.cursor else {}
    new = sorted(name for name, fp in current.items() if seen.get(name) != fp)
    if new and warehouse.exists(home):
        # Files that `flywheel ingest` or `flywheel run` already took in since they last changed need no run.
        try:
            with warehouse.session(home, read_only=True, lock_timeout_s=1) as con:
                handled = handled_since_modified(
                    con, {str(home.landing / name): current[name][1] / 1e9 for name in new})
            new = [name for name in new if str(home.landing / name) not in handled]
        except warehouse.WarehouseBusyError:
            return dg.SkipReason("the warehouse is being written; checking the landing folder at the next tick")
    if not new:
        context.update_cursor(json.dumps(current, sort_keys=True))
        return dg.SkipReason("no new files in the landing folder")
    run_key = hashlib.sha1(json.dumps({n: current[n] for n in new}, sort_keys=True).encode()).hexdigest()
    context.update_cursor(json.dumps(current, sort_keys=True))
    return dg.RunRequest(
        run_key=run_key,
        run_config=dg.RunConfig(ops={"raw_events": {"config": {"paths": new}}}),
        tags={"flywheel/files": str(len(new))},
    )
