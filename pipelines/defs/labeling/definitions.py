import dagster as dg

from pipelines.defs.labeling.assets import labeling_labels, labeling_queue
from pipelines.defs.labeling.jobs import daily_labeling_schedule, labeling_job, pull_labels_job, pull_labels_schedule

defs = dg.Definitions(
    assets=[labeling_queue, labeling_labels],
    jobs=[labeling_job, pull_labels_job],
    schedules=[daily_labeling_schedule, pull_labels_schedule],
)
