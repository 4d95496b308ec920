import dagster as dg

from pipelines.defs.publish.assets import release_assets, router
from pipelines.defs.publish.jobs import publish_after_new_labels, publish_job, weekly_publish_schedule

defs = dg.Definitions(assets=[*release_assets, router], jobs=[publish_job], schedules=[weekly_publish_schedule],
                      sensors=[publish_after_new_labels])
