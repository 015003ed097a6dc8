"""Query results as Arrow: `fetch_frame` with a schema reads PostgreSQL by COPY TO and gives the
same values as DuckDB's Arrow export (NULL vs empty text, exact decimals, dates, booleans)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pandas as pd
import pyarrow as pa

from connectors.sql import fetch_frame, read_frame
from staging_models.db import StagingDB

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("note", pa.string()),
        ("amount", pa.decimal128(18, 2)),
        ("day", pa.date32()),
        ("n", pa.int64()),
        ("ok", pa.bool_()),
    ]
)
ROWS = """SELECT * FROM (VALUES
    ('a', '', CAST(1234567890123456.78 AS NUMERIC(18, 2)), DATE '2026-11-02', 7, TRUE),
    ('b''s, "q"', NULL, CAST(-0.05 AS NUMERIC(18, 2)), NULL, NULL, FALSE),
    ('c%', 'line
two', NULL, DATE '2026-12-31', -1, NULL)) v(id, note, amount, day, n, ok)
    WHERE id <> :skip ORDER BY id"""


def test_fetch_frame_by_copy_keeps_every_value(any_db: StagingDB) -> None:
    with any_db.engine.connect() as conn:
        got = fetch_frame(conn, ROWS, {"skip": "z"}, arrow_dtypes=True, schema=SCHEMA)
        plain = read_frame(conn, ROWS, {"skip": "z"})
    assert all(isinstance(t, pd.ArrowDtype) for t in got.dtypes)
    rows = got.astype(object).where(got.notna(), None).to_dict("records")
    assert rows == [
        {
            "id": "a",
            "note": "",
            "amount": Decimal("1234567890123456.78"),
            "day": date(2026, 11, 2),
            "n": 7,
            "ok": True,
        },
        {
            "id": 'b\'s, "q"',
            "note": None,
            "amount": Decimal("-0.05"),
            "day": None,
            "n": None,
            "ok": False,
        },
        {
            "id": "c%",
            "note": "line\ntwo",
            "amount": None,
            "day": date(2026, 12, 31),
            "n": -1,
            "ok": None,
        },
    ]
    assert plain["id"].tolist() == got["id"].tolist()


def test_fetch_frame_by_copy_of_no_rows_has_the_schema(any_db: StagingDB) -> None:
    with any_db.engine.connect() as conn:
        got = fetch_frame(
            conn, ROWS.replace("<>", "="), {"skip": "a"}, arrow_dtypes=True, schema=SCHEMA
        )
    assert len(got) == 1
    with any_db.engine.connect() as conn:
        none = fetch_frame(
            conn,
            f"SELECT * FROM ({ROWS}) r WHERE FALSE",
            {"skip": ""},
            arrow_dtypes=True,
            schema=SCHEMA,
        )
    assert none.empty and list(none.columns) == SCHEMA.names
