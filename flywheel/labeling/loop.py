"""The two steps of the labeling loop, as the CLI and the Dagster assets run them.

queue_and_push: sample each labeling dataset's budget into labeling.queue, then push what is not yet pushed
                (including what an earlier failed push left behind).
pull_all:       pull every labeling dataset's responses into labeling.labels, compute agreement, and push the
                records that low agreement sent back for another label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb

from flywheel.labeling import sampling, sync
from flywheel.labeling.client import ArgillaTarget
from flywheel.labeling.datasets import PAIRWISE, RESPONSE_REVIEW, DatasetSpec, load_sampling, load_spec


@dataclass
class LoopReport:
    sampled: dict[str, sampling.SampleReport] = field(default_factory=dict)
    pushed: dict[str, sync.PushReport] = field(default_factory=dict)
    pulled: dict[str, sync.PullReport] = field(default_factory=dict)


def specs(names: dict[str, str] | None = None) -> dict[str, DatasetSpec]:
    """The labeling datasets from schemas/labeling; `names` renames datasets (tests, several environments)."""
    loaded = {kind: load_spec(kind) for kind in (RESPONSE_REVIEW, PAIRWISE)}
    for kind, name in (names or {}).items():
        spec = loaded[kind]
        loaded[kind] = DatasetSpec(spec.kind, name, spec.config, spec.path)
    return loaded


def queue_and_push(con: duckdb.DuckDBPyConnection, target: ArgillaTarget, budgets: dict[str, int] | None = None,
                   names: dict[str, str] | None = None,
                   on_batch: Callable[[str, int, int], None] | None = None) -> LoopReport:
    """Queue each dataset's budget and push. `budgets` given: that many now. Not given: the configured budget is
    a day's (UTC), less what was queued today already, so running the cycle again on a day adds nothing."""
    config, report = load_sampling(), LoopReport()
    budgets = budgets or {}
    datasets = specs(names)
    samplers = {RESPONSE_REVIEW: sampling.sample_response_review, PAIRWISE: sampling.sample_pairwise}
    for kind, spec in datasets.items():
        budget = budgets.get(kind)
        if budget is None:
            daily = int(config.get(kind, {}).get("budget", 200 if kind == RESPONSE_REVIEW else 50))
            budget = max(0, daily - sampling.queued_today(con, spec))
        report.sampled[kind] = samplers[kind](con, spec, config.get(kind, {}), budget=budget)
    for kind, spec in datasets.items():
        report.pushed[kind] = sync.push(con, target, spec,
                                        on_batch=(lambda done, total, k=kind: on_batch(k, done, total))
                                        if on_batch else None)
    return report


def pull_all(con: duckdb.DuckDBPyConnection, target: ArgillaTarget, names: dict[str, str] | None = None) -> LoopReport:
    config, report = load_sampling().get("agreement", {}), LoopReport()
    for kind, spec in specs(names).items():
        report.pulled[kind] = sync.pull(con, target, spec, agreement_threshold=float(config.get("threshold", 0.5)),
                                        max_rounds=int(config.get("max_rounds", 3)))
        if report.pulled[kind].requeued:
            report.pushed[kind] = sync.push(con, target, spec)
    return report
