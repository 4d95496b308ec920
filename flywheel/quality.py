"""Data quality: Great Expectations suites (stored in schemas/expectations/) run on the rows of a model.

Each suite has a frame beside it (`<model>.frame.sql`): the SQL that turns a model's rows (the days just
built, or the whole table) into the columns the expectations read, including derived flags (valid roles,
message order, timestamps in the future, known models, orphaned feedback). Validation runs on a pandas batch:
Great Expectations' SQL path on DuckDB fails silently (results with success=False and an exception inside),
the pandas path does not.
Expectations of severity `critical` are errors that block downstream assets; `warning` ones are reported.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from flywheel.days import DayRange
from flywheel.settings import SCHEMAS_DIR

SUITES_DIR = SCHEMAS_DIR / "expectations"
@dataclass
class ExpectationOutcome:
    expectation: str
    column: str | None
    severity: str  # critical | warning | info
    success: bool
    unexpected_count: int
    examples: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


@dataclass
class SuiteOutcome:
    suite: str
    rows: int
    outcomes: list[ExpectationOutcome]

    def failures(self, severity: str) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success and o.severity == severity]

    @property
    def passed(self) -> bool:
        return not self.failures("critical")


def suite_path(relation: str) -> Path:
    return SUITES_DIR / f"{relation.split('.')[-1]}.json"


def frame_path(relation: str) -> Path:
    """The SQL that turns a model's rows into what its suite reads, beside the suite."""
    return SUITES_DIR / f"{relation.split('.')[-1]}.frame.sql"


def has_suite(relation: str) -> bool:
    return suite_path(relation).exists() and frame_path(relation).exists()


def validate_frame(frame, suite: dict[str, Any], key_column: str | None = None) -> SuiteOutcome:
    """Run a suite (as stored in schemas/expectations/) on a pandas DataFrame."""
    import great_expectations as gx  # slow to import: only when validating
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX sets this module's logger to INFO when imported; it would log every ephemeral context it makes.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)  # quiet logs
    batch = (context.data_sources.add_pandas("flywheel").add_dataframe_asset(suite["name"])
             .add_batch_definition_whole_dataframe("whole"))
    expectations = [{k: v for k, v in e.items() if k != "severity"} for e in suite["expectations"]]
    severities = [e.get("severity", "critical") for e in suite["expectations"]]
    gx_suite = context.suites.add(gx.ExpectationSuite(name=suite["name"], expectations=expectations))
    validation = gx.ValidationDefinition(data=batch, suite=gx_suite, name=f"{suite['name']}-validation")
    result = validation.run(batch_parameters={"dataframe": frame},
                            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5})
    by_id = {e.id: severity for e, severity in zip(gx_suite.expectations, severities, strict=True)}
    outcomes = []
    for item in result.results:
        config = item.expectation_config
        details = item.result or {}
        error = item.exception_info.get("exception_message") if item.exception_info.get("raised_exception") else None
        examples = []
        for index in details.get("partial_unexpected_index_list") or []:
            row = frame.iloc[index] if isinstance(index, int) else None
            if row is not None:
                examples.append({k: _plain(v) for k, v in row.items()
                                 if k in {key_column, config.kwargs.get("column")}})
        outcomes.append(ExpectationOutcome(
            expectation=config.type, column=config.kwargs.get("column"), severity=by_id.get(config.id, "critical"),
            # an expectation that could not run has not passed
            success=bool(item.success) and error is None,
            unexpected_count=int(details.get("unexpected_count") or 0), examples=examples, error=error,
        ))
    return SuiteOutcome(suite["name"], len(frame), outcomes)


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value.item() if hasattr(value, "item") else value


def check_relation(con: duckdb.DuckDBPyConnection, relation: str, days: DayRange | date | None = None
                   ) -> SuiteOutcome:
    """Validate a model's rows (the days built, for an incremental model) against its stored suite."""
    suite = json.loads(suite_path(relation).read_text())
    sql = frame_path(relation).read_text(encoding="utf-8")
    days = DayRange.of(days) if days else None
    params = {"first": days.first, "last": days.last} if days and "$first" in sql else {}
    frame = con.execute(sql, params).pl().to_pandas()
    key = frame.columns[0] if len(frame.columns) else None
    return validate_frame(frame, suite, key_column=key)
