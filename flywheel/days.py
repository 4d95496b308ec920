"""Days of data: the unit every layer after raw is built in, and what tells which days need building.

A day needs building when interactions reached it after its last build. Every raw row carries `ingested_at`
(the time of the transaction that stored it, and DuckDB has one writer at a time), so a day's *watermark*,
the latest `ingested_at` of its interactions, only grows, and a build that records the warehouse's watermark
at its start has seen every day whose watermark is not above it. (Feedback changes no day's staging: the
models that join it cover all days at once.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import duckdb


@dataclass(frozen=True)
class DayRange:
    """The days one build covers, both ends included."""

    first: date
    last: date

    @classmethod
    def of(cls, days: DayRange | date) -> DayRange:
        return days if isinstance(days, DayRange) else cls(days, days)

    @classmethod
    def parse(cls, first: str, last: str) -> DayRange:
        return cls(date.fromisoformat(first), date.fromisoformat(last))

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}..{self.last}"

    def lock_keys(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """What a writer of these days holds alone, and what it shares: its days, sharing their months, when they
        are a month or fewer; else the months themselves. Either way two writers of a common day take turns,
        writers of different days do not, and no writer holds more than a few dozen locks."""
        span = (self.last - self.first).days + 1
        days = [self.first + timedelta(n) for n in range(span)]
        months = tuple(sorted({f"{d:%Y-%m}" for d in days}))
        return (tuple(d.isoformat() for d in days), months) if span <= 31 else (months, ())


def set_day_range(con: duckdb.DuckDBPyConnection, days: DayRange) -> None:
    """The variables an incremental model filters its days on: `getvariable('first_day')`, `('last_day')`."""
    con.execute(f"SET VARIABLE first_day = DATE '{days.first.isoformat()}'")
    con.execute(f"SET VARIABLE last_day = DATE '{days.last.isoformat()}'")


def day_watermarks(con: duckdb.DuckDBPyConnection) -> dict[date, datetime]:
    """Every day that has interactions, with the latest time interactions of that day were stored."""
    return dict(con.execute("SELECT event_date, max(ingested_at) FROM raw.interactions GROUP BY 1 ORDER BY 1"
                            ).fetchall())


def warehouse_watermark(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The latest time any raw event was stored: a build that starts now has seen everything up to it."""
    return con.execute("""SELECT max(t) FROM (SELECT max(ingested_at) AS t FROM raw.interactions
                                              UNION ALL SELECT max(ingested_at) FROM raw.feedback)""").fetchall()[0][0]


def stretches(chosen: Iterable[date], known: Iterable[date], max_gap: int = 0) -> list[DayRange]:
    """The chosen days as ranges to build, one run each: a range spans chosen days only, or across at most
    `max_gap` other known days in a row (rebuilding a day that did not need it is waste, a run costs more);
    days without data between them cost nothing."""
    chosen_set = set(chosen)
    ranges: list[DayRange] = []
    current: DayRange | None = None
    skipped = 0
    for day in sorted(set(known) | chosen_set):
        if day in chosen_set:
            if current and skipped <= max_gap:
                current = DayRange(current.first, day)
            else:
                if current:
                    ranges.append(current)
                current = DayRange(day, day)
            skipped = 0
        elif current:
            skipped += 1
    if current:
        ranges.append(current)
    return ranges
