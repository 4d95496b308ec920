"""The one Definitions object: every stage's definitions merged, with resources for the deployment."""

from __future__ import annotations

import os

import dagster as dg

from pipelines.defs.ingest.definitions import defs as ingest_defs
from pipelines.resources import resources_for

DEPLOYMENT = os.environ.get("FLYWHEEL_DEPLOYMENT", "local")

defs = dg.Definitions.merge(
    ingest_defs,
    dg.Definitions(resources=resources_for(DEPLOYMENT)),
)
