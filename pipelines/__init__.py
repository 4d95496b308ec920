"""Dagster wiring for flywheel: thin assets, jobs, sensors and schedules over the `flywheel` library."""

import warnings

# backfill_policy (a whole range of days in one run) is marked beta; the warning would print at every import.
# Matched by its text: importing Dagster here would make every `flywheel` command pay for it.
warnings.filterwarnings("ignore", message=r".*(is|are) currently in beta")
