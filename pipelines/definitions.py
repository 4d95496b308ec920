"""The one Definitions object: every stage's definitions merged, with resources for the deployment."""

from __future__ import annotations

import os

import dagster as dg

from pipelines.defs.ingest import definitions as ingest
from pipelines.defs.labeling import definitions as labeling
from pipelines.defs.sql_models import definitions as sql_models
from pipelines.resources import resources_for

DEPLOYMENT = os.environ.get("FLYWHEEL_DEPLOYMENT", "local")

defs = dg.Definitions.merge(
    ingest.defs,
    sql_models.defs,
    labeling.defs,
    dg.Definitions(resources=resources_for(DEPLOYMENT)),
)
