"""Functions the SQL models call, defined from the Python that owns each rule (one definition of each)."""

from __future__ import annotations

import contextlib
from functools import lru_cache

import duckdb
import pyarrow as pa

from flywheel.pricing import CHARS_PER_TOKEN, TOKENS_PER_MESSAGE
from flywheel.redact import PLACEHOLDER_PATTERN, redact
from flywheel.warehouse import writing

# System prompts and templated requests repeat constantly in production traffic: redact each distinct text once.
_redact_cached = lru_cache(maxsize=100_000)(redact)


def _redact_array(texts: pa.Array) -> pa.Array:
    return pa.array([_redact_cached(text) for text in texts.to_pylist()], pa.string())


def _embed_array(texts: pa.Array) -> pa.Array:
    from flywheel.embed import DIMENSIONS, embed

    vectors = embed(texts.to_pylist())
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), DIMENSIONS)


# Pure-SQL functions stored in the warehouse itself, so the views that call them work in any DuckDB client.
STORED_MACROS = {
    "system_prompt": """(messages) AS array_to_string(list_transform(
        list_filter(messages, m -> m.role IN ('system', 'developer')), m -> m.content), chr(10))""",
    "conversation_text": """(messages) AS array_to_string(list_transform(
        messages, m -> m.role || ': ' || coalesce(m.content, '')), chr(10))""",
    # The mean of doubles summed exactly: avg() adds them in whatever order its threads and the storage hand them
    # over, so its last digits differ from run to run and between the embedded file and a lake. NULLs are left
    # out as by avg(): `exact_avg(CASE WHEN ... THEN x END)` is avg(x) FILTER (WHERE ...).
    "exact_avg": """(x) AS (sum(x::DECIMAL(38, 18)) / count(x))::DOUBLE""",
}


def _store_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Store the macros that are new or changed: replacing them on every call would make concurrent writers of a
    lake conflict on the catalog (and costs a catalog write each time)."""
    for name, body in STORED_MACROS.items():
        con.execute(f"CREATE OR REPLACE TEMP MACRO stored_macro_probe_{name}{body}")
    found = con.execute("""
        SELECT database_name = 'temp', replace(function_name, 'stored_macro_probe_', ''), parameters, macro_definition
        FROM duckdb_functions() WHERE function_type = 'macro' AND schema_name = 'main'
          AND (database_name = 'temp' AND function_name LIKE 'stored_macro_probe_%'
               OR database_name = current_database())""").fetchall()
    wanted = {name: (parameters, body) for probe, name, parameters, body in found if probe}
    stored = {name: (parameters, body) for probe, name, parameters, body in found if not probe}
    stale = [name for name in STORED_MACROS if stored.get(name) != wanted.get(name)]
    if stale:
        with writing(con, "stored macros"):
            for name in stale:
                con.execute(f"CREATE OR REPLACE MACRO main.{name}{STORED_MACROS[name]}")


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Make `redact(text)`, `redacted_kinds(text)`, `text_embedding(text)` and `estimate_tokens(chars, n_messages)`
    callable here, and
    store `system_prompt(messages)`, `conversation_text(messages)` and `exact_avg(x)` in the warehouse."""
    _store_macros(con)
    con.execute(f"""
        CREATE OR REPLACE TEMP MACRO estimate_tokens(chars, n_messages) AS
            CAST(round(chars / {CHARS_PER_TOKEN}) AS BIGINT) + {TOKENS_PER_MESSAGE} * n_messages
    """)
    # What the training exports count and check, one definition for the marts and the release validation:
    # the characters a conversation sends (texts and tool calls), and whether a message has nothing in it.
    con.execute("""
        CREATE OR REPLACE TEMP MACRO message_chars(messages) AS list_sum(list_transform(messages,
            m -> length(coalesce(m.content, '')) + length(coalesce(m.tool_calls::VARCHAR, ''))))
    """)
    con.execute("""
        CREATE OR REPLACE TEMP MACRO empty_message(m) AS
            coalesce(trim(m.content), '') = '' AND m.tool_calls IS NULL AND m.refusal IS NULL
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP MACRO redacted_kinds(text) AS regexp_extract_all(text, '{PLACEHOLDER_PATTERN}', 1)
    """)
    with contextlib.suppress(duckdb.InvalidInputException):  # not registered on this connection yet
        con.remove_function("redact")
    con.create_function("redact", _redact_array, ["VARCHAR"], "VARCHAR", type="arrow", side_effects=False)
    with contextlib.suppress(duckdb.InvalidInputException):
        con.remove_function("text_embedding")
    # The offline embedding of flywheel.embed (256 floats, unit length): the router's view of a prompt.
    con.create_function("text_embedding", _embed_array, ["VARCHAR"], "FLOAT[256]", type="arrow", side_effects=False)
