"""Ingestion: landing files (JSONL, gzip, Parquet, OpenAI pairs, mapped exports) into the raw layer."""

from flywheel.ingest.loader import FileReport, ingest_file, ingest_paths
from flywheel.ingest.mapping import FieldMapping, MappingError, load_mapping
from flywheel.ingest.sources import discover

__all__ = ["FieldMapping", "FileReport", "MappingError", "discover", "ingest_file", "ingest_paths", "load_mapping"]
