"""The one Definitions object: every stage's definitions merged, with resources for the deployment."""

from __future__ import annotations

import dagster as dg

from flywheel.settings import Home
from pipelines.defs.build import definitions as build
from pipelines.defs.curation import definitions as curation
from pipelines.defs.dedup import definitions as dedup
from pipelines.defs.ingest import definitions as ingest
from pipelines.defs.labeling import definitions as labeling
from pipelines.defs.publish import definitions as publish
from pipelines.defs.reference import definitions as reference
from pipelines.defs.replay import definitions as replay
from pipelines.defs.sql_models import definitions as sql_models
from pipelines.resources import executor_for, resources_for


def definitions_for(home: str = "") -> dg.Definitions:
    """Every stage's definitions with the profile's resources and executor; `home` binds them to one
    FLYWHEEL_HOME (the CLI's in-process runs), empty reads FLYWHEEL_HOME when a run executes (the Dagster UI and
    daemon)."""
    # One package per stage, in the direction of the data; `build` holds the job and sensor that run the middle.
    layout = Home.from_env(home or None)
    return dg.Definitions.merge(ingest.defs, reference.defs, sql_models.defs, dedup.defs, curation.defs,
                                labeling.defs, publish.defs, replay.defs, build.defs,
                                dg.Definitions(resources=resources_for(home), executor=executor_for(layout)))


defs = definitions_for()
