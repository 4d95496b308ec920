"""An Argilla search engine that answers every query from Argilla's own SQL database.

Runs inside the Argilla server's virtual environment (it imports `argilla_server`), never in flywheel's.

Why derived from SQL and not a separate index: the SQL database is what Argilla commits, so nothing can drift,
a restart loses nothing, and every server process sees the same answers. Writes (`index_records`, response and
suggestion updates) therefore need no work here. Queries load the dataset's rows once per request and filter,
sort and aggregate them in Python with the semantics of Argilla's Elasticsearch engine (see
`argilla_server/search_engine/commons.py`): AND text search over fields, "pending" = no response by this user,
nested response filters, missing values sorted last, cosine similarity scored (1 + cos) / 2.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from argilla_server.database import AsyncSessionLocal
from argilla_server.enums import MetadataPropertyType, SimilarityOrder, SortOrder
from argilla_server.models import (
    Dataset,
    MetadataProperty,
    Question,
    Record,
    Response,
    Suggestion,
    User,
    Vector,
    VectorSettings,
)
from argilla_server.search_engine import (
    AndFilter,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    Order,
    RangeFilter,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    SuggestionFilterScope,
    TermsFilter,
    TermsMetrics,
    TextQuery,
)
from sqlalchemy import func, literal, select

ENGINE_NAME = "flywheel-sql"
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class Doc:
    id: UUID
    external_id: str | None
    status: str
    inserted_at: Any
    updated_at: Any
    fields: dict
    metadata: dict
    suggestions: dict = field(default_factory=dict)
    responses: list = field(default_factory=list)
    vectors: dict = field(default_factory=dict)


def _field_text(value: Any) -> str:
    """Text of a field value; chat fields are lists of {role, content} messages."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_field_text(item.get("content") if isinstance(item, dict) else item) for item in value)
    if isinstance(value, dict):
        return " ".join(_field_text(v) for v in value.values())
    return str(value)


def _text_score(doc: Doc, query: TextQuery) -> float | None:
    """Number of query-term hits, or None when a term is missing (AND semantics, `term*` for prefixes)."""
    values = [doc.fields.get(query.field)] if query.field else list(doc.fields.values())
    words = [w.lower() for w in _WORD.findall(" ".join(_field_text(v) for v in values))]
    score = 0.0
    for term in query.q.lower().split():
        prefix = term.endswith("*")
        term_words = _WORD.findall(term.rstrip("*"))
        if not term_words:
            continue
        for word in term_words:
            hits = sum(1 for w in words if (w.startswith(word) if prefix else w == word))
            if not hits:
                return None
            score += hits
    return score


def _matches_value(value: Any, flt: TermsFilter | RangeFilter) -> bool:
    if value is None:
        return False
    if isinstance(value, list):
        return any(_matches_value(v, flt) for v in value)
    if isinstance(flt, TermsFilter):
        return str(value) in {str(v) for v in flt.values}
    try:
        number = float(value)
        if flt.ge is not None and number < float(flt.ge):
            return False
        return not (flt.le is not None and number > float(flt.le))
    except (TypeError, ValueError):
        text = str(value)
        return (flt.ge is None or text >= str(flt.ge)) and (flt.le is None or text <= str(flt.le))


def _user_responses(doc: Doc, user: User | None) -> list[dict]:
    return [r for r in doc.responses if user is None or r["user_id"] == user.id]


def _response_value(response: dict, question: str) -> Any:
    entry = (response["values"] or {}).get(question)
    return entry.get("value") if isinstance(entry, dict) else None


def _matches(doc: Doc, flt: Any) -> bool:
    if isinstance(flt, AndFilter):
        return all(_matches(doc, f) for f in flt.filters)
    scope = flt.scope
    if isinstance(scope, ResponseFilterScope):
        responses = _user_responses(doc, scope.user)
        if scope.question:
            return any(_matches_value(_response_value(r, scope.question), flt) for r in responses)
        if scope.property == "status" and isinstance(flt, TermsFilter):
            wanted = {str(v) for v in flt.values}
            if "pending" in wanted and not responses:
                return True
            return any(str(r["status"]) in wanted for r in responses)
        raise ValueError(f"Cannot process filter scope {scope}")
    return _matches_value(_scope_value(doc, scope), flt)


def _scope_value(doc: Doc, scope: Any) -> Any:
    if isinstance(scope, MetadataFilterScope):
        return doc.metadata.get(scope.metadata_property)
    if isinstance(scope, SuggestionFilterScope):
        return (doc.suggestions.get(scope.question) or {}).get(str(scope.property))
    if isinstance(scope, RecordFilterScope):
        value = getattr(doc, str(scope.property))
        return str(value) if isinstance(value, UUID) else value
    if isinstance(scope, ResponseFilterScope):
        responses = _user_responses(doc, scope.user)
        if scope.question:
            values = [_response_value(r, scope.question) for r in responses]
        else:
            values = [r.get(scope.property) for r in responses]
        numbers = [v for v in values if isinstance(v, (int, float))]
        if numbers:
            return sum(numbers) / len(numbers)
        return next((v for v in values if v is not None), None)
    raise ValueError(f"Cannot process request for search scope {scope}")


def _sort(docs: list[Doc], orders: list[Order]) -> list[Doc]:
    """Stable multi-key sort; missing values last whatever the direction, as in Elasticsearch."""
    for order in reversed(orders):
        values = [(d, _scope_value(d, order.scope)) for d in docs]
        present = [(d, v) for d, v in values if v is not None]
        present.sort(key=lambda pair: _sortable(pair[1]), reverse=order.order == SortOrder.desc)
        docs = [d for d, _ in present] + [d for d, v in values if v is None]
    return docs


def _sortable(value: Any) -> Any:
    if isinstance(value, list):
        value = value[0] if value else ""
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def _shuffle_key(user_id: Any, doc: Doc) -> bytes:
    # Deterministic per-user order, like Elasticsearch's seeded random_score: annotators sharing a dataset
    # start on different records, and pagination stays stable for each of them.
    return hashlib.blake2b(f"{user_id}:{doc.id}".encode(), digest_size=8).digest()


async def load_docs(dataset_id: UUID, *, with_fields: bool = True, with_vectors: bool = False) -> list[Doc]:
    """Every record of a dataset with its responses, suggestions (and fields, vectors), read from Argilla's SQL
    database. Fields, the largest column, are read only for text queries."""
    fields_column = Record.fields if with_fields else literal(None).label("fields")
    async with AsyncSessionLocal() as db:
        rows = await db.execute(
            select(
                Record.id,
                Record.external_id,
                Record.status,
                Record.inserted_at,
                Record.updated_at,
                fields_column,
                Record.metadata_,
            )
            .where(Record.dataset_id == dataset_id)
            .order_by(Record.inserted_at, Record.id)
        )
        docs = {r.id: Doc(r.id, r.external_id, str(r.status), r.inserted_at, r.updated_at, r[5] or {},
                          r.metadata_ or {}) for r in rows}
        responses = await db.execute(
            select(Response.record_id, Response.user_id, Response.status, Response.values)
            .join(Record, Record.id == Response.record_id)
            .where(Record.dataset_id == dataset_id)
        )
        for r in responses:
            docs[r.record_id].responses.append(
                {"user_id": r.user_id, "status": str(r.status), "values": r.values or {}}
            )
        suggestions = await db.execute(
            select(Suggestion.record_id, Question.name, Suggestion.value, Suggestion.score, Suggestion.agent,
                   Suggestion.type)
            .join(Question, Question.id == Suggestion.question_id)
            .join(Record, Record.id == Suggestion.record_id)
            .where(Record.dataset_id == dataset_id)
        )
        for s in suggestions:
            docs[s.record_id].suggestions[s.name] = {
                "value": s.value, "score": s.score, "agent": s.agent, "type": str(s.type) if s.type else None
            }
        if with_vectors:
            vectors = await db.execute(
                select(Vector.record_id, VectorSettings.name, Vector.value)
                .join(VectorSettings, VectorSettings.id == Vector.vector_settings_id)
                .join(Record, Record.id == Vector.record_id)
                .where(Record.dataset_id == dataset_id)
            )
            for v in vectors:
                docs[v.record_id].vectors[v.name] = v.value
    return list(docs.values())


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _as_text_query(query: TextQuery | str | None) -> TextQuery | None:
    return TextQuery(q=query) if isinstance(query, str) else query


@SearchEngine.register(engine_name=ENGINE_NAME)
class SQLSearchEngine(SearchEngine):
    @classmethod
    async def new_instance(cls) -> SQLSearchEngine:
        return cls()

    async def close(self) -> None:
        pass

    async def ping(self) -> bool:
        return True

    async def info(self) -> dict:
        return {"distribution": ENGINE_NAME, "number": "1"}

    # Writes: the SQL database is the index, so there is nothing to copy.
    async def create_index(self, dataset: Dataset) -> None:
        pass

    async def delete_index(self, dataset: Dataset) -> None:
        pass

    async def configure_metadata_property(self, dataset: Dataset, metadata_property: MetadataProperty) -> None:
        pass

    async def configure_index_vectors(self, vector_settings: VectorSettings) -> None:
        pass

    async def index_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        pass

    async def partial_record_update(self, record: Record, **update: Any) -> None:
        pass

    async def delete_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        pass

    async def update_record_response(self, response: Response) -> None:
        pass

    async def delete_record_response(self, response: Response) -> None:
        pass

    async def update_record_suggestion(self, suggestion: Suggestion) -> None:
        pass

    async def delete_record_suggestion(self, suggestion: Suggestion) -> None:
        pass

    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        if dataset.is_draft:
            return {}
        async with AsyncSessionLocal() as db:
            rows = await db.execute(select(Record.status, func.count()).where(Record.dataset_id == dataset.id)
                                    .group_by(Record.status))
            counts = {str(status): n for status, n in rows}
        return {"total": sum(counts.values()), **counts}

    async def get_dataset_user_progress(self, dataset: Dataset, user: User) -> dict:
        if dataset.is_draft:
            return {}
        async with AsyncSessionLocal() as db:
            rows = await db.execute(
                select(Response.status, func.count())
                .join(Record, Record.id == Response.record_id)
                .where(Record.dataset_id == dataset.id, Response.user_id == user.id)
                .group_by(Response.status)
            )
            counts = {str(status): n for status, n in rows}
        return {"total": sum(counts.values()), **counts}

    async def search(
        self,
        dataset: Dataset,
        query: TextQuery | str | None = None,
        filter: Any = None,
        sort: list[Order] | None = None,
        offset: int = 0,
        limit: int = 100,
        user_id: Any = None,
    ) -> SearchResponses:
        text = _as_text_query(query)
        scored: list[tuple[Doc, float]] = []
        for doc in await load_docs(dataset.id, with_fields=text is not None):
            if filter is not None and not _matches(doc, filter):
                continue
            score = _text_score(doc, text) if text else 1.0
            if score is not None:
                scored.append((doc, score))
        if sort:
            docs = _sort([d for d, _ in scored], sort)
            scores = {d.id: s for d, s in scored}
            ranked = [(d, scores[d.id]) for d in docs]
        else:
            if user_id is not None:
                scored.sort(key=lambda pair: _shuffle_key(user_id, pair[0]))
            if text:
                scored.sort(key=lambda pair: -pair[1])
            ranked = scored
        page = ranked[offset : offset + limit]
        return SearchResponses(
            items=[SearchResponseItem(record_id=d.id, score=s) for d, s in page], total=len(ranked)
        )

    async def similarity_search(
        self,
        dataset: Dataset,
        vector_settings: VectorSettings,
        value: list[float] | None = None,
        record: Record | None = None,
        query: TextQuery | str | None = None,
        filter: Any = None,
        max_results: int = 100,
        order: SimilarityOrder = SimilarityOrder.most_similar,
        threshold: float | None = None,
    ) -> SearchResponses:
        if bool(value) == bool(record):
            raise ValueError("Must provide either vector value or record to compute the similarity search")
        docs = await load_docs(dataset.id, with_fields=query is not None, with_vectors=True)
        if record is not None:
            value = next((d.vectors.get(vector_settings.name) for d in docs if d.id == record.id), None)
        if not value:
            raise ValueError("Cannot find a vector value to apply with provided info")
        if order == SimilarityOrder.least_similar:
            value = [-x for x in value]
        text = _as_text_query(query)
        hits = []
        for doc in docs:
            vector = doc.vectors.get(vector_settings.name)
            if vector is None or (record is not None and doc.id == record.id):
                continue
            if filter is not None and not _matches(doc, filter):
                continue
            if text and _text_score(doc, text) is None:
                continue
            score = (1.0 + _cosine(value, vector)) / 2.0
            if threshold is None or score >= threshold:
                hits.append((doc.id, score))
        hits.sort(key=lambda hit: -hit[1])
        top = hits[:max_results]
        return SearchResponses(items=[SearchResponseItem(record_id=i, score=s) for i, s in top], total=len(top))

    async def compute_metrics_for(self, metadata_property: MetadataProperty) -> Any:
        values = []
        for doc in await load_docs(metadata_property.dataset_id, with_fields=False):
            value = doc.metadata.get(metadata_property.name)
            if value is None:
                continue
            values.extend(value if isinstance(value, list) else [value])
        if metadata_property.type == MetadataPropertyType.terms:
            counts: dict[str, int] = {}
            for value in values:
                counts[str(value)] = counts.get(str(value), 0) + 1
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            return TermsMetrics(total=len(values), values=[TermsMetrics.TermCount(term=t, count=c) for t, c in ranked])
        numbers = [v for v in values if isinstance(v, (int, float))]
        metrics_class = (
            IntegerMetadataMetrics if metadata_property.type == MetadataPropertyType.integer else FloatMetadataMetrics
        )
        return metrics_class(min=min(numbers, default=None), max=max(numbers, default=None))
