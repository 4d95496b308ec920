"""Dagster wiring for flywheel: thin assets, jobs, sensors and schedules over the `flywheel` library."""

import warnings

from dagster import BetaWarning

# backfill_policy (a whole range of days in one run) is marked beta; the warning would print at every import.
warnings.filterwarnings("ignore", category=BetaWarning)
