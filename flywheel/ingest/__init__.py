"""Ingestion: landing files (JSONL, gzip, Parquet, OpenAI pairs, mapped exports) into the raw layer."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flywheel.ingest.loader import FileReport, ingest_file
    from flywheel.ingest.mapping import FieldMapping, MappingError, load_mapping
    from flywheel.ingest.raw_layer import handled_since_modified
    from flywheel.ingest.sources import discover

__all__ = ["FieldMapping", "FileReport", "MappingError", "discover", "handled_since_modified", "ingest_file",
           "load_mapping"]
_HOMES = {"FileReport": "loader", "handled_since_modified": "raw_layer", "ingest_file": "loader",
          "FieldMapping": "mapping", "MappingError": "mapping", "load_mapping": "mapping", "discover": "sources"}


def __getattr__(name: str) -> Any:
    # Imported on first use: worker processes import only what validating a block needs.
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"flywheel.ingest.{_HOMES[name]}"), name)
