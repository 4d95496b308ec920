"""Releases: immutable, versioned copies of the curated datasets (the marts), for fine-tuning, routing and evals.

A release of a dataset is a folder `FLYWHEEL_HOME/releases/<dataset>/<version>/` holding:

    data/<split>.parquet        the mart's rows of each split (what `datasets.load_dataset("parquet", ...)`,
                                polars and DuckDB read as they are)
    openai/<split>.jsonl        OpenAI fine-tuning files: chat `{"messages": [...]}` (SFT) or preference (DPO)
    wide/<split>.parquet        router_examples: one row per prompt, a score and a cost column per model
    manifest.json               version, rows per split, sha256 of every file, what it was built from
    README.md                   a Hugging Face dataset card

It is written in a hidden folder beside the others and renamed into place once complete, then the `latest`
link is swapped to it: a reader sees a whole release or none. Publishing rows identical to the latest
release's makes no new version. Before anything is renamed into place the rows are validated (roles, message
order, empty content, tool-call structure, token limits) and every written file is scanned for what the
redaction knows as secrets or personal data: a release that fails is not published, and the error names rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from flywheel import sqlfunctions
from flywheel.curation import SPLITS, Rules, load_rules
from flywheel.reports import markdown_table
from flywheel.settings import REPO_ROOT
from flywheel.warehouse import sql_literal

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
LATEST = "latest"


@dataclass(frozen=True)
class Dataset:
    name: str
    key: str  # a SQL expression that names a row across releases (for diffs)
    openai: str | None = None  # "chat" (SFT) or "preference" (DPO)
    wide: bool = False  # router_examples: also one column per model


DATASETS = {d.name: d for d in (
    Dataset("curated_interactions", "request_id"),
    Dataset("sft_examples", "request_id", openai="chat"),
    Dataset("preference_pairs", "pair_id", openai="preference"),
    Dataset("router_examples", "cluster_id || '|' || model", wide=True),
    Dataset("eval_items", "cluster_id"),
)}
# What made the rows: every SQL model, the Python they call, the rules, the marts' checks and the exports.
CODE_VERSION = hashlib.sha256(b"".join(p.read_bytes() for p in [
    *sorted((REPO_ROOT / "dbt_like_sql").rglob("*.sql")), *sorted((REPO_ROOT / "schemas" / "expectations").glob("*")),
    REPO_ROOT / "schemas" / "curation.yaml", Path(__file__),
    *(REPO_ROOT / "flywheel" / f"{name}.py" for name in ("curation", "sqlfunctions", "redact", "embed", "pricing")),
])).hexdigest()[:12]


class ReleaseError(ValueError):
    """A release that was not published, and why (the rows and reasons)."""


@dataclass
class Published:
    dataset: str
    version: str | None  # None: nothing new to publish
    path: Path | None
    rows: dict[str, int] = field(default_factory=dict)
    unchanged_since: str | None = None  # the latest version, when nothing was published
    why: str = ""  # why nothing was published

    @property
    def bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file()) if self.path else 0


# -- validation -----------------------------------------------------------------------------------------------
def _message_problems(messages: str, must_end_with: str | None) -> str:
    """A SQL list of the problems of a `messages` column, each a short text naming the message."""
    roles = ", ".join(map(sql_literal, ROLES))
    end = (f"""CASE WHEN {messages}[-1].role <> '{must_end_with}'
                    THEN ['the last message is from ' || coalesce({messages}[-1].role, 'nobody')
                          || ', not the {must_end_with}'] ELSE [] END""" if must_end_with else "[]")
    return f"""flatten([
        CASE WHEN len({messages}) = 0 THEN ['no messages'] ELSE [] END,
        {end},
        list_transform(list_filter(list_zip({messages}, range(1, len({messages}) + 1)),
                                   p -> p[1].role NOT IN ({roles})),
                       p -> 'message ' || p[2] || ': unknown role ' || coalesce(p[1].role, 'NULL')),
        list_transform(list_filter(list_zip({messages}, range(1, len({messages}) + 1)),
                                   p -> empty_message(p[1])),
                       p -> 'message ' || p[2] || ' (' || coalesce(p[1].role, '?') || '): empty content'),
        list_transform(list_filter(list_zip({messages}, range(1, len({messages}) + 1)),
                                   p -> p[1].tool_calls IS NOT NULL AND (
                                        json_type(p[1].tool_calls) <> 'ARRAY'
                                        OR len(list_filter(from_json(p[1].tool_calls, '["JSON"]'),
                                               c -> json_extract_string(c, '$.id') IS NULL
                                                    OR json_extract_string(c, '$.function.name') IS NULL
                                                    OR json_type(c, '$.function.arguments') <> 'VARCHAR')) > 0)),
                       p -> 'message ' || p[2] || ': a tool call without id, function name or arguments text'),
        list_transform(list_filter(list_zip({messages}, range(1, len({messages}) + 1)),
                                   p -> p[1].role = 'tool' AND p[1].tool_call_id IS NULL),
                       p -> 'message ' || p[2] || ': a tool message without tool_call_id')
    ])"""


def _tokens(messages: str, extra: str = "0") -> str:
    """flywheel's token estimate (as for costs; the marts filter by the same)."""
    return f"estimate_tokens(message_chars({messages}) + {extra}, len({messages}))"


def validation_problems(con: duckdb.DuckDBPyConnection, dataset: Dataset, relation: str, rules: Rules
                        ) -> list[tuple[str, str]]:
    """(row key, reason) for every row that may not be released."""
    if dataset.openai is None:
        return []
    sqlfunctions.register(con)
    limit = rules.sft.token_limit()
    target = rules.sft.target_model
    if dataset.openai == "chat":
        problems = _message_problems("messages", "assistant")
        tokens = _tokens("messages")
    else:
        problems = f"""flatten([{_message_problems("messages", None)},
            CASE WHEN messages[-1].role NOT IN ('user', 'tool') THEN ['the prompt ends with a message from '
                 || coalesce(messages[-1].role, 'nobody') || ', not the user'] ELSE [] END,
            CASE WHEN coalesce(trim(chosen), '') = '' OR coalesce(trim(rejected), '') = ''
                 THEN ['an empty chosen or rejected answer'] ELSE [] END,
            CASE WHEN chosen = rejected THEN ['chosen and rejected are the same text'] ELSE [] END])"""
        tokens = _tokens("messages", "greatest(length(chosen), length(rejected))")
    rows = con.execute(f"""
        SELECT key, unnest(problems) FROM (
            SELECT {dataset.key} AS key,
                   list_concat({problems},
                       CASE WHEN {tokens} > {limit}
                            THEN ['about ' || ({tokens}) || ' tokens, over the {limit} of {target}'] ELSE [] END
                   ) AS problems
            FROM {relation})
        ORDER BY 1""").fetchall()
    return [(str(key), reason) for key, reason in rows]


# -- exports ----------------------------------------------------------------------------------------------------
def _openai_message(m: str) -> str:
    """One message as OpenAI writes it: fields without a value left out, content given as parts kept as parts,
    tool calls as the model wrote them."""
    return f"""to_json(map_from_entries(list_filter([
        {{'k': 'role', 'v': to_json({m}.role)}},
        {{'k': 'content', 'v': CASE WHEN json_valid({m}.content) AND starts_with(ltrim({m}.content), '[')
                                   THEN {m}.content::JSON ELSE to_json({m}.content) END}},
        {{'k': 'name', 'v': to_json({m}.name)}},
        {{'k': 'tool_calls', 'v': {m}.tool_calls}},
        {{'k': 'tool_call_id', 'v': to_json({m}.tool_call_id)}},
        {{'k': 'refusal', 'v': to_json({m}.refusal)}}
    ], e -> e.v IS NOT NULL)))"""


def _openai_lines(dataset: Dataset, relation: str, split: str) -> str:
    messages = f"list_transform(messages, m -> {_openai_message('m')})"
    tools = "CASE WHEN tools IS NOT NULL THEN ', \"tools\": ' || tools::VARCHAR ELSE '' END"
    if dataset.openai == "chat":
        line = f"""'{{"messages": [' || array_to_string({messages}, ', ') || ']' || {tools} || '}}'"""
    else:
        line = f"""'{{"input": {{"messages": [' || array_to_string({messages}, ', ') || ']' || {tools} || '}}, '
                   || '"preferred_output": [{{"role": "assistant", "content": ' || to_json(chosen)::VARCHAR || '}}], '
                   || '"non_preferred_output": [{{"role": "assistant", "content": ' || to_json(rejected)::VARCHAR
                   || '}}]}}'"""
    return f"SELECT {line} AS line FROM {relation} WHERE split = '{split}' ORDER BY {dataset.key}"


def _write_lines(con: duckdb.DuckDBPyConnection, query: str, target: Path) -> None:
    # CSV with no quoting, header or delimiter in play writes each line as it is: JSON lines, one per row.
    con.execute(f"""COPY ({query}) TO {sql_literal(str(target))}
                    (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x1f')""")


def _write_parquet(con: duckdb.DuckDBPyConnection, query: str, target: Path) -> None:
    con.execute(f"COPY ({query}) TO {sql_literal(str(target))} (FORMAT parquet, COMPRESSION zstd)")


def _wide_query(relation: str, split: str) -> str:
    return f"""PIVOT (SELECT cluster_id, split, app_id, cheapest_good_model, model, quality_score, cost_usd
                      FROM {relation} WHERE split = '{split}')
               ON model USING first(quality_score) AS score, first(cost_usd) AS cost
               GROUP BY cluster_id, split, app_id, cheapest_good_model ORDER BY cluster_id"""


# -- scanning ---------------------------------------------------------------------------------------------------
def secrets_found(con: duckdb.DuckDBPyConnection, folder: Path) -> list[str]:
    """Every released file's text that the redaction would still change: '<file>: <n> row(s)' per file.
    Identifiers (`*_id` columns) are flywheel's or the application's keys, not logged text, and are not scanned."""
    sqlfunctions.register(con)
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".parquet":
            columns = con.execute(f"DESCRIBE SELECT * FROM read_parquet({sql_literal(str(path))})").fetchall()
            texts = [f'"{name}"' for name, kind, *_ in columns
                     if ("VARCHAR" in kind or "JSON" in kind or "STRUCT" in kind) and "FLOAT" not in kind
                     and not name.endswith("_id")]
            if not texts:
                continue
            query = f"""SELECT count(*) FROM (SELECT concat_ws(chr(10), {", ".join(f"{t}::VARCHAR" for t in texts)})
                                              AS text FROM read_parquet({sql_literal(str(path))}))
                        WHERE redact(text) <> text"""
        elif path.suffix in (".jsonl", ".md", ".json"):
            query = f"""SELECT count(*) FROM read_csv({sql_literal(str(path))}, columns = {{'text': 'VARCHAR'}},
                            header = false, quote = '', escape = '', delim = '\x1f', auto_detect = false)
                        WHERE redact(text) <> text"""
        else:
            continue
        count = con.execute(query).fetchall()[0][0]
        if count:
            found.append(f"{path.relative_to(folder)}: {count} row(s)")
    return found


# -- publishing -------------------------------------------------------------------------------------------------
def fingerprint(con: duckdb.DuckDBPyConnection, relation: str) -> str:
    """A hash of the rows, whatever their order: equal rows, equal fingerprint."""
    return con.execute(f"""SELECT coalesce(md5(string_agg(h, '' ORDER BY h)), md5(''))
                           FROM (SELECT md5(t::VARCHAR) AS h FROM {relation} t)""").fetchall()[0][0]


def dataset_folder(releases: Path, dataset: str) -> Path:
    return releases / dataset


def versions(releases: Path, dataset: str) -> list[str]:
    """The complete releases of a dataset, oldest first (a hidden folder is one being written)."""
    folder = dataset_folder(releases, dataset)
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and not p.is_symlink() and p.name.startswith("v") and (p / "manifest.json").exists())


def latest_version(releases: Path, dataset: str) -> str | None:
    link = dataset_folder(releases, dataset) / LATEST
    return os.readlink(link) if link.is_symlink() else None


def manifest(releases: Path, dataset: str, version: str) -> dict:
    return json.loads((dataset_folder(releases, dataset) / version / "manifest.json").read_text())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def point_latest(folder: Path, version: str) -> None:
    """Swap the `latest` link in one rename: a reader finds the old release or the new, never neither."""
    temporary = folder / f".latest-{uuid.uuid4().hex[:8]}"
    os.symlink(version, temporary)
    os.replace(temporary, folder / LATEST)


def remove_incomplete(releases: Path) -> int:
    """Delete the hidden folders of releases whose writer stopped before renaming them into place."""
    removed = 0
    for incoming in releases.glob("*/.incoming-*"):
        shutil.rmtree(incoming, ignore_errors=True)
        removed += 1
    for link in releases.glob("*/.latest-*"):
        link.unlink(missing_ok=True)
    return removed


def inputs_stamp(con: duckdb.DuckDBPyConnection) -> str:
    """What the next releases would be built from (the latest ingestion, the labels, the code and rules): while
    it is the last publish's, publishing again would release nothing new and is skipped."""
    from flywheel.days import warehouse_watermark
    from flywheel.labeling.store import labels_stamp

    return f"{warehouse_watermark(con)}|{labels_stamp(con)}|{load_rules().digest}|{CODE_VERSION}"


def built_from(con: duckdb.DuckDBPyConnection) -> dict:
    """What a release was built from: the days of traffic, the latest ingestion and the latest label pull."""
    days, ingested = con.execute("""SELECT [min(event_date)::VARCHAR, max(event_date)::VARCHAR],
                                           max(ingested_at)::VARCHAR FROM raw.interactions""").fetchall()[0]
    labels, pulled = con.execute("SELECT count(*), max(updated_at)::VARCHAR FROM labeling.labels").fetchall()[0]
    return {"days": days, "latest_ingestion": ingested, "labels": labels, "latest_label_pull": pulled}


def publish(con: duckdb.DuckDBPyConnection, releases: Path, dataset_name: str, rules: Rules | None = None,
            *, now: datetime | None = None, on_step: Callable[[str], None] | None = None) -> Published:
    """Publish the mart `marts.<dataset>` as a new release, unless its rows equal the latest release's."""
    dataset, rules = DATASETS[dataset_name], rules or load_rules()
    relation = f"marts.{dataset.name}"
    step = on_step or (lambda message: None)
    folder = dataset_folder(releases, dataset.name)
    folder.mkdir(parents=True, exist_ok=True)
    rows_digest = fingerprint(con, relation)
    existing = versions(releases, dataset.name)
    latest = latest_version(releases, dataset.name)
    if latest and manifest(releases, dataset.name, latest)["fingerprint"] == rows_digest:
        return Published(dataset.name, None, None, unchanged_since=latest, why="the rows equal the latest release's")
    if not con.execute(f"SELECT count(*) FROM {relation}").fetchall()[0][0]:
        return Published(dataset.name, None, None, unchanged_since=latest, why="the mart has no rows")
    problems = validation_problems(con, dataset, relation, rules)
    if problems:
        shown = "\n".join(f"  {key}: {reason}" for key, reason in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ReleaseError(f"{dataset.name}: {len(problems)} problem(s) in {len({k for k, _ in problems})} row(s); "
                           f"nothing was published:\n{shown}{more}")
    version = f"v{int(existing[-1][1:]) + 1 if existing else 1:04d}"
    incoming = folder / f".incoming-{version}-{uuid.uuid4().hex[:8]}"
    (incoming / "data").mkdir(parents=True)
    try:
        rows = dict(con.execute(f"SELECT split, count(*) FROM {relation} GROUP BY 1").fetchall())
        for split in (s for s in SPLITS if rows.get(s)):
            step(f"{dataset.name} {version}: {split} ({rows[split]:,} rows)")
            _write_parquet(con, f"SELECT * FROM {relation} WHERE split = '{split}' ORDER BY {dataset.key}",
                           incoming / "data" / f"{split}.parquet")
            if dataset.openai:
                (incoming / "openai").mkdir(exist_ok=True)
                _write_lines(con, _openai_lines(dataset, relation, split), incoming / "openai" / f"{split}.jsonl")
            if dataset.wide:
                (incoming / "wide").mkdir(exist_ok=True)
                _write_parquet(con, _wide_query(relation, split), incoming / "wide" / f"{split}.parquet")
        created = (now or datetime.now(UTC)).isoformat(timespec="seconds")
        (incoming / "README.md").write_text(dataset_card(con, dataset, relation, version, rows, rules))
        leaks = secrets_found(con, incoming)
        if leaks:
            raise ReleaseError(f"{dataset.name}: the redaction still finds secrets or personal data in "
                               f"{'; '.join(leaks)}; nothing was published")
        files = {str(p.relative_to(incoming)): {"sha256": _sha256(p), "bytes": p.stat().st_size}
                 for p in sorted(incoming.rglob("*")) if p.is_file()}
        document = {
            "dataset": dataset.name, "version": version, "previous": latest, "created_at": created,
            "rows": {s: rows.get(s, 0) for s in SPLITS}, "fingerprint": rows_digest, "files": files,
            "built_from": built_from(con),
            "selection": {"file": "schemas/curation.yaml", "sha256": rules.digest},
            "code_version": CODE_VERSION,
        }
        (incoming / "manifest.json").write_text(json.dumps(document, indent=2) + "\n")
        _fsync_tree(incoming)
        os.rename(incoming, folder / version)
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    point_latest(folder, version)
    return Published(dataset.name, version, folder / version, {s: rows.get(s, 0) for s in SPLITS})


# -- the dataset card -------------------------------------------------------------------------------------------
def dataset_card(con: duckdb.DuckDBPyConnection, dataset: Dataset, relation: str, version: str,
                 rows: dict[str, int], rules: Rules) -> str:
    """A Hugging Face dataset card: the YAML header names the splits' files, the text says what is in them."""
    splits = [s for s in SPLITS if rows.get(s)]
    configs = ["configs:", "- config_name: default", "  data_files:"]
    configs += [f"  - split: {s}\n    path: data/{s}.parquet" for s in splits]
    if dataset.wide:
        configs += ["- config_name: wide", "  data_files:"]
        configs += [f"  - split: {s}\n    path: wide/{s}.parquet" for s in splits]
    columns = {name for name, *_ in con.execute(f"DESCRIBE {relation}").fetchall()}
    sections = [f"# {dataset.name} {version}", "",
                "Curated by flywheel from production traffic. Rows per split: "
                + ", ".join(f"{s} {rows.get(s, 0):,}" for s in SPLITS) + ".", ""]
    for column in ("app_id", "model", "quality_source", "pair_source", "reference_source"):
        if column in columns:
            counts = con.execute(f"""SELECT coalesce({column}, '(none)'), count(*) FROM {relation}
                                     GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20""").fetchall()
            sections += [f"## By {column}", "", markdown_table((column, "rows"), counts), ""]
    sections += ["## Filters applied", "", "From `schemas/curation.yaml` "
                 f"(sha256 {rules.digest}):", "", "```json",
                 json.dumps({"signal_precedence": rules.signal_precedence, "quality_bar": rules.quality_bar,
                             "sft": {"min_quality": rules.sft.min_quality,
                                     "include_corrected": rules.sft.include_corrected,
                                     "target_model": rules.sft.target_model,
                                     "token_limit": rules.sft.token_limit()},
                             "preferences": {"min_margin": rules.preferences.min_margin},
                             "router": {"quality_bar": rules.router.quality_bar},
                             "eval": {"share": rules.eval.share, "pool": rules.eval.pool},
                             "splits": {"train": rules.splits.train, "validation": rules.splits.validation,
                                        "test": rules.splits.test}}, indent=2),
                 "```", "",
                 "Texts were redacted before they left the raw layer; near-duplicates share a split.", ""]
    return "---\n" + "\n".join(configs) + "\n---\n\n" + "\n".join(sections)
