"""What every stage's wiring shares: the warehouse's writer rules and the days partitions."""

import dagster as dg

# Steps in this pool write the DuckDB file; one at a time across all runs (dagster.yaml).
WAREHOUSE_POOL = "warehouse"
# Runs with this tag queue behind each other (dagster.yaml): one writer of the DuckDB file at a time.
WAREHOUSE_WRITE_TAGS = {"flywheel/warehouse": "write"}

# One partition per day that has data, whatever its date: keys are added from the data as it arrives
# (pipelines/builds.py keeps them in date order, so a range of keys is a range of dates).
DAYS = dg.DynamicPartitionsDefinition(name="days")
