import dagster as dg

from pipelines.defs.replay.assets import answers
from pipelines.defs.replay.jobs import replay_job

defs = dg.Definitions(assets=[answers], jobs=[replay_job])
