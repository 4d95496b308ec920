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
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from flywheel.days import DayRange
from flywheel.settings import SCHEMAS_DIR
from flywheel.warehouse import sql_literal

SUITES_DIR = SCHEMAS_DIR / "expectations"
# Rows of a frame validated at once: pandas holds them as Python objects, prompt texts included, and the 7 days
# of a 10M-row build as one frame would not fit beside DuckDB in the 4 GB such a cycle may use.
CHUNK_ROWS = 250_000


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


def check_relation(con: duckdb.DuckDBPyConnection, relation: str, days: DayRange | date | None = None,
                   chunk_rows: int = CHUNK_ROWS) -> SuiteOutcome:
    """Validate a model's rows (the days built, for an incremental model) against its stored suite.

    A frame of more than `chunk_rows` rows is validated in parts, one in memory at a time: the parts split the
    rows by a hash of the frame's key (its first column), so a duplicated key lies within one part and the key's
    uniqueness is exact; another column expected unique is counted over the whole frame in SQL."""
    suite = json.loads(suite_path(relation).read_text())
    sql = frame_path(relation).read_text(encoding="utf-8")
    days = DayRange.of(days) if days else None
    params = {"first": days.first, "last": days.last} if days and "$first" in sql else {}
    rows = con.execute(f"SELECT count(*) FROM ({sql})", params).fetchall()[0][0]
    if rows <= chunk_rows:
        frame = con.execute(sql, params).pl().to_pandas()
        return validate_frame(frame, suite, key_column=frame.columns[0] if len(frame.columns) else None)
    key = con.execute(f"SELECT * FROM ({sql}) LIMIT 0", params).description[0][0]
    parts = -(-rows // chunk_rows)
    outcomes: list[SuiteOutcome] = []
    # The frame is computed once and written out split into its parts (one pass, on disk), then read back a
    # part at a time: computing it again per part would read every row's messages once per part.
    spill = con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0] or None
    if spill:
        Path(spill).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="quality-", dir=spill) as folder:
        con.execute(f"""COPY (SELECT *, hash("{key}") % {parts} AS flywheel_part FROM ({sql}))
                        TO {sql_literal(folder)} (FORMAT parquet, PARTITION_BY (flywheel_part), OVERWRITE_OR_IGNORE)""",
                    params)
        for part in sorted(Path(folder).glob("flywheel_part=*")):
            files = sql_literal(str(part / "*.parquet"))
            frame = con.execute(f"SELECT * FROM read_parquet({files}, hive_partitioning = false)").pl().to_pandas()
            outcomes.append(validate_frame(frame, suite, key_column=key))
            del frame
    merged = _merged(outcomes)
    for index, expectation in enumerate(suite["expectations"]):
        column = expectation.get("kwargs", {}).get("column")
        if expectation["type"] == "expect_column_values_to_be_unique" and column != key:
            merged.outcomes[index] = _unique_over_whole(con, sql, params, column, key, merged.outcomes[index])
    return merged


def _merged(parts: list[SuiteOutcome]) -> SuiteOutcome:
    """One outcome per expectation over all parts: failed if any part failed, unexpected rows summed."""
    outcomes = []
    for same in zip(*(p.outcomes for p in parts), strict=True):
        first = same[0]
        outcomes.append(ExpectationOutcome(
            expectation=first.expectation, column=first.column, severity=first.severity,
            success=all(o.success for o in same), unexpected_count=sum(o.unexpected_count for o in same),
            examples=[e for o in same for e in o.examples][:5], error=next((o.error for o in same if o.error), None)))
    return SuiteOutcome(parts[0].suite, sum(p.rows for p in parts), outcomes)


def _unique_over_whole(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any], column: str, key: str,
                       outcome: ExpectationOutcome) -> ExpectationOutcome:
    """A column's uniqueness across every part, as Great Expectations counts it: each non-null row whose value
    occurs more than once is unexpected."""
    duplicated, examples = con.execute(f"""
        WITH frame AS ({sql}), repeated AS (
            SELECT "{column}" AS value FROM frame WHERE "{column}" IS NOT NULL GROUP BY 1 HAVING count(*) > 1)
        SELECT (SELECT count(*) FROM frame WHERE "{column}" IN (SELECT value FROM repeated)),
               (SELECT list({{'{key}': "{key}", '{column}': "{column}"}}) FROM (
                    SELECT * FROM frame WHERE "{column}" IN (SELECT value FROM repeated) ORDER BY "{key}" LIMIT 5))
        """, params).fetchall()[0]
    return ExpectationOutcome(expectation=outcome.expectation, column=column, severity=outcome.severity,
                              success=duplicated == 0, unexpected_count=int(duplicated),
                              examples=[{k: _plain(v) for k, v in e.items()} for e in examples or []])
