"""Reference tables the SQL models join: the price of every model seen in the traffic."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from flywheel.pricing import PriceTable, default_price_table
from flywheel.warehouse import create, writing

MODEL_PRICES_SCHEMA = pa.schema([
    ("model", pa.string()), ("canonical_model", pa.string()), ("provider", pa.string()),
    ("input_per_mtok", pa.float64()), ("output_per_mtok", pa.float64()),
])


def write_model_prices(con: duckdb.DuckDBPyConnection, prices: PriceTable | None = None) -> dict[str, int]:
    """Resolve every model name in raw.interactions against the price table (snapshots, prefixes) and store
    the result as reference.model_prices; return how many names were priced and unpriced."""
    prices = prices or default_price_table()
    names = [row[0] for row in con.execute("SELECT DISTINCT model FROM raw.interactions ORDER BY 1").fetchall()]
    rows = [(name, p.model, p.provider, p.input_per_mtok, p.output_per_mtok)
            for name in names if (p := prices.lookup(name)) is not None]
    table = pa.Table.from_arrays([pa.array(col, f.type) for col, f in
                                  zip(zip(*rows, strict=True) if rows else [[]] * 5, MODEL_PRICES_SCHEMA,
                                      strict=True)], schema=MODEL_PRICES_SCHEMA)
    create(con, "CREATE SCHEMA IF NOT EXISTS reference")
    con.register("model_prices_rows", table)
    with writing(con, "reference.model_prices"):
        con.execute("CREATE OR REPLACE TABLE reference.model_prices AS SELECT * FROM model_prices_rows")
    con.unregister("model_prices_rows")
    return {"priced": len(rows), "unpriced": len(names) - len(rows)}


def unpriced_models(con: duckdb.DuckDBPyConnection, limit: int = 20) -> list[str]:
    """Model names in the traffic that the price table does not know (their cost stays unknown)."""
    return [row[0] for row in con.execute("""
        SELECT DISTINCT model FROM raw.interactions
        WHERE model NOT IN (SELECT model FROM reference.model_prices) ORDER BY 1 LIMIT ?""", [limit]).fetchall()]
