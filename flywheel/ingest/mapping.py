"""Declarative field mappings: bring any JSON export in without code.

A mapping is a YAML file that says, for each event a source record yields, where each contract field
comes from. A field is a JMESPath expression over the source record (`outcome.correct`,
`{role: 'assistant', content: response}`), or `{const: value}`, or `{path: expr, default: value}`.
An event may carry `when: expr`, and is emitted only where that expression is truthy. See
`schemas/mappings/` for examples.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jmespath
import yaml
from jmespath.exceptions import JMESPathError

from flywheel.contracts import CONTRACTS, field_names

_MISSING = object()
ENTRY_KEY = "_fw_entry"  # which of the mapping's events made an event (taken off before validation)
# Fields whose absence changes what another field means: a rating without its scale is read as out of 5.
_MEANING_DEFAULTS = {("feedback", "rating"): ("rating_scale", "a rating without `rating_scale` is read as out of 5")}


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class _Field:
    name: str
    expression: Any  # compiled JMESPath, or None for constants
    constant: Any = _MISSING
    default: Any = _MISSING

    def value(self, record: dict[str, Any]) -> Any:
        if self.constant is not _MISSING:
            return self.constant
        found = self.expression.search(record)
        if found is None and self.default is not _MISSING:
            return self.default
        return found


@dataclass(frozen=True)
class _EventMapping:
    kind: str
    fields: tuple[_Field, ...]
    when: Any  # compiled JMESPath or None

    def apply(self, record: dict[str, Any]) -> dict[str, Any] | None:
        if self.when is not None and not self.when.search(record):
            return None
        event: dict[str, Any] = {"kind": self.kind}
        for field in self.fields:
            value = field.value(record)
            if value is not None:
                event[field.name] = value
        return event


@dataclass(frozen=True)
class FieldMapping:
    name: str
    source: Path
    events: tuple[_EventMapping, ...]
    digest: str = ""  # of the file's text: part of a mapped input's identity, so a fixed mapping re-reads it
    warnings: tuple[str, ...] = ()

    def apply(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        made = []
        for index, mapping in enumerate(self.events):
            event = mapping.apply(record)
            if event is not None:
                event[ENTRY_KEY] = f"{mapping.kind} event (events[{index}] of mapping {self.name})"
                made.append(event)
        return made


def _compile(expression: str, where: str) -> Any:
    try:
        return jmespath.compile(expression)
    except JMESPathError as error:
        raise MappingError(f"{where}: invalid JMESPath expression {expression!r}: {error}") from error


def _field(name: str, spec: Any, where: str) -> _Field:
    if isinstance(spec, str):
        return _Field(name, _compile(spec, where))
    if isinstance(spec, dict) and set(spec) == {"const"}:
        return _Field(name, None, constant=spec["const"])
    if isinstance(spec, dict) and "path" in spec and set(spec) <= {"path", "default"}:
        return _Field(name, _compile(spec["path"], where), default=spec.get("default", _MISSING))
    raise MappingError(
        f"{where}: a field is a JMESPath string, {{const: value}} or {{path: expr, default: value}}; "
        f"got {spec!r}"
    )


def load_mapping(path: Path) -> FieldMapping:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise MappingError(f"{path}: cannot read mapping: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise MappingError(f"{path}: a mapping needs a list under 'events'")
    events, warnings = [], []
    for index, event in enumerate(document["events"]):
        where = f"{path}: events[{index}]"
        kind = event.get("kind") if isinstance(event, dict) else None
        if kind not in CONTRACTS:
            raise MappingError(f"{where}: 'kind' must be one of {sorted(CONTRACTS)}, got {kind!r}")
        known = field_names(kind)
        fields = []
        for name, spec in (event.get("fields") or {}).items():
            if name not in known:
                raise MappingError(f"{where}.fields.{name}: not a field of the {kind} contract")
            fields.append(_field(name, spec, f"{where}.fields.{name}"))
        when = _compile(event["when"], f"{where}.when") if event.get("when") else None
        events.append(_EventMapping(kind, tuple(fields), when))
        mapped = {f.name for f in fields}
        for (of_kind, name), (needed, why) in _MEANING_DEFAULTS.items():
            if kind == of_kind and name in mapped and needed not in mapped:
                warnings.append(f"{where}.fields: {why}; map `{needed}` if your scale differs")
    text = path.read_bytes()
    return FieldMapping(document.get("name", path.stem), path, tuple(events),
                        hashlib.sha256(text).hexdigest()[:12], tuple(warnings))
