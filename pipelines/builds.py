"""Which days need building, from the one record of what is built: Dagster's materializations.

Every asset of the build job records, as its data version, the warehouse watermark it was built from (and
its code version). A day needs building when one of its assets has no such record, was built from older
raw data than the day now holds, or with other code (`flywheel.days`). The CLI (`flywheel build`, `run`) and
the build sensor plan with the same function, so no path repeats what another has built.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import dagster as dg
import duckdb
from dagster._core.events import DagsterEventType
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from flywheel.days import DayRange, day_watermarks, stretches, warehouse_watermark
from flywheel.ingest.raw_layer import raw_layer_exists
from pipelines.shared import DAYS

DATA_VERSION_TAG = "dagster/data_version"
# Days that need building are built in one run across up to this many days that do not: every run rebuilds
# the whole-history assets (clusters, feedback), which costs more than a few extra days of staging.
MAX_GAP_DAYS = 31


def data_version(watermark: datetime | None, code_version: str) -> dg.DataVersion:
    """What a build records: the raw data it has seen (everything stored up to `watermark`) and its code."""
    return dg.DataVersion(f"{watermark.isoformat() if watermark else 'empty'}|{code_version}")


def _built_from(version: str | None, code_version: str) -> datetime | None:
    """The watermark a recorded build saw, or None when there is no record or its code was other."""
    if not version or "|" not in version:
        return None
    watermark, code = version.split("|", 1)
    if code != code_version:
        return None
    return datetime.min.replace(tzinfo=UTC) if watermark == "empty" else datetime.fromisoformat(watermark)


def range_tags(days: DayRange) -> dict[str, str]:
    """Run tags that make one run build a range of day partitions (the single-run backfill's own tags)."""
    return {ASSET_PARTITION_RANGE_START_TAG: str(days.first), ASSET_PARTITION_RANGE_END_TAG: str(days.last)}


def register_days(instance: dg.DagsterInstance, days: Iterable[date]) -> list[str]:
    """Add the day partitions the data has and Dagster lacks, keeping every key in date order (a range of
    keys must be a range of dates): a day older than the newest known one re-adds the keys after it.
    Materializations are kept by key, so re-added days keep their history. Returns the keys added."""
    known = list(instance.get_dynamic_partitions(DAYS.name))
    new = sorted({str(day) for day in days} - set(known))
    if not new:
        return []
    later = [key for key in known if key > new[0]]
    for key in later:
        instance.delete_dynamic_partition(DAYS.name, key)
    instance.add_dynamic_partitions(DAYS.name, sorted(new + later))
    return new


@dataclass(frozen=True)
class BuildPlan:
    ranges: list[DayRange]           # one run each, all build assets
    other_assets: list[dg.AssetKey]  # stale assets not partitioned by day, when no range builds them anyway
    watermark: datetime | None
    days_with_data: list[date] = field(default_factory=list)

    @property
    def days(self) -> int:
        return sum(1 for day in self.days_with_data if any(r.first <= day <= r.last for r in self.ranges))

    @property
    def empty(self) -> bool:
        return not self.ranges and not self.other_assets


def plan_build(instance: dg.DagsterInstance, con: duckdb.DuckDBPyConnection, assets: Sequence[dg.AssetsDefinition],
               *, only: Iterable[date] | None = None, since: date | None = None, until: date | None = None,
               everything: bool = False) -> BuildPlan:
    """The runs that bring the chosen days up to date: by default every day that needs building; `only`
    names days, `since`/`until` bound them, `everything` rebuilds the chosen days whether they need it or not.
    Registers any day partition the data has that Dagster lacks."""
    if not raw_layer_exists(con):
        return BuildPlan([], [], None)
    marks = day_watermarks(con)
    watermark = warehouse_watermark(con)
    register_days(instance, marks)
    wanted = set(only) if only is not None else set(marks)
    wanted = {d for d in wanted if d in marks and (since is None or d >= since) and (until is None or d <= until)}
    stale: set[date] = set(wanted) if everything else set()
    others = []
    storage = instance.event_log_storage
    for asset in assets:
        for key in asset.keys:
            code = asset.code_versions_by_key.get(key) or ""
            if asset.partitions_def is not None:
                if everything:
                    continue
                recorded = storage.get_latest_tags_by_partition(key, DagsterEventType.ASSET_MATERIALIZATION,
                                                                [DATA_VERSION_TAG])
                for day in wanted - stale:
                    built = _built_from(recorded.get(str(day), {}).get(DATA_VERSION_TAG), code)
                    if built is None or built < marks[day]:
                        stale.add(day)
            else:
                event = instance.get_latest_materialization_event(key)
                tags = event.asset_materialization.tags if event and event.asset_materialization else {}
                built = _built_from((tags or {}).get(DATA_VERSION_TAG), code)
                if built is None or (watermark and built < watermark):
                    others.append(key)
    ranges = stretches(stale, marks, max_gap=MAX_GAP_DAYS)
    return BuildPlan(ranges, [] if ranges else others, watermark, sorted(marks))
