"""Dagster definitions, one package per stage of the flow (landing → raw → staging → ...)."""
