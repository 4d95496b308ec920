"""Labeling dataset settings, kept as YAML in schemas/labeling, turned into Argilla settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flywheel.settings import SCHEMAS_DIR

LABELING_DIR = SCHEMAS_DIR / "labeling"
RESPONSE_REVIEW = "response_review"
PAIRWISE = "pairwise"
FIELD_TYPES = {"chat", "text"}
QUESTION_TYPES = {"rating", "label", "multi_label", "text"}
METADATA_TYPES = {"terms", "float", "integer"}


class LabelingConfigError(ValueError):
    """A labeling settings file is invalid; the message names the file and the entry."""


@dataclass(frozen=True)
class DatasetSpec:
    kind: str
    name: str
    config: dict[str, Any]
    path: Path

    @property
    def question_names(self) -> list[str]:
        return [q["name"] for q in self.config["questions"]]

    @property
    def metadata_names(self) -> list[str]:
        return [m["name"] for m in self.config.get("metadata", [])]

    @property
    def min_submitted(self) -> int:
        return int(self.config.get("distribution", {}).get("min_submitted", 1))

    def settings(self):
        """The Argilla `rg.Settings` this file describes."""
        import argilla as rg

        builders = {
            "chat": lambda f: rg.ChatField(name=f["name"], title=f.get("title"), required=f.get("required", True)),
            "text": lambda f: rg.TextField(name=f["name"], title=f.get("title"), required=f.get("required", True),
                                           use_markdown=f.get("use_markdown", False)),
        }
        questions = {
            "rating": lambda q: rg.RatingQuestion(name=q["name"], title=q.get("title"), values=q["values"],
                                                  required=q.get("required", True)),
            "label": lambda q: rg.LabelQuestion(name=q["name"], title=q.get("title"), labels=q["labels"],
                                                required=q.get("required", True)),
            "multi_label": lambda q: rg.MultiLabelQuestion(name=q["name"], title=q.get("title"), labels=q["labels"],
                                                           required=q.get("required", True)),
            "text": lambda q: rg.TextQuestion(name=q["name"], title=q.get("title"), required=q.get("required", True),
                                              use_markdown=q.get("use_markdown", False)),
        }
        metadata = {
            "terms": lambda m: rg.TermsMetadataProperty(name=m["name"], title=m.get("title")),
            "float": lambda m: rg.FloatMetadataProperty(name=m["name"], title=m.get("title")),
            "integer": lambda m: rg.IntegerMetadataProperty(name=m["name"], title=m.get("title")),
        }

        return rg.Settings(
            guidelines=self.config.get("guidelines"),
            allow_extra_metadata=self.config.get("allow_extra_metadata", False),
            fields=[builders[f["type"]](f) for f in self.config["fields"]],
            questions=[questions[q["type"]](q) for q in self.config["questions"]],
            metadata=[metadata[m["type"]](m) for m in self.config.get("metadata", [])],
            vectors=[rg.VectorField(name=v["name"], dimensions=v["dimensions"], title=v.get("title"))
                     for v in self.config.get("vectors") or []],
            distribution=rg.TaskDistribution(min_submitted=self.min_submitted),
        )


def load_spec(kind: str, folder: Path = LABELING_DIR) -> DatasetSpec:
    path = folder / f"{kind}.yaml"
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise LabelingConfigError(f"{path}: {error}") from error
    for key in ("name", "fields", "questions"):
        if not config or key not in config:
            raise LabelingConfigError(f"{path}: missing '{key}'")
    for section, key, known in (("field", "fields", FIELD_TYPES), ("question", "questions", QUESTION_TYPES),
                                ("metadata", "metadata", METADATA_TYPES)):
        for entry in config.get(key) or []:
            entry = entry if isinstance(entry, dict) else {"name": entry}
            if entry.get("type") not in known:
                raise LabelingConfigError(f"{path}: {section} {entry.get('name')!r} has type {entry.get('type')!r}; "
                                          f"expected one of {sorted(known)}")
    return DatasetSpec(kind=kind, name=config["name"], config=config, path=path)


def load_sampling(folder: Path = LABELING_DIR) -> dict[str, Any]:
    path = folder / "sampling.yaml"
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise LabelingConfigError(f"{path}: {error}") from error
