"""The exception lines of the latest reconciliation, kept in staging (`rec_lines`).

Exception lines can number in the hundreds of thousands, so they never go through
pandas or `to_sql`: Arrow in, Arrow out (DuckDB scans the Arrow table in place;
PostgreSQL takes it through COPY). The smaller result frames (totals, invoices, key
figures) go through the staging-table IO manager instead.
"""

from __future__ import annotations

import pyarrow as pa
import sqlalchemy as sa

from connectors.sql import copy_arrow, sql_literal
from reconciliation._inputs import Input, duck_inputs
from reconciliation.compare import LINE_SCHEMA
from staging_models.db import StagingDB

_META = sa.MetaData()


def _sa_type(t: pa.DataType) -> sa.types.TypeEngine:
    if pa.types.is_decimal(t):
        return sa.Numeric(t.precision, t.scale, asdecimal=True)
    if pa.types.is_timestamp(t):
        return sa.DateTime(timezone=True)
    if pa.types.is_date(t):
        return sa.Date()
    if pa.types.is_integer(t):
        return sa.BigInteger()
    return sa.Text()


#: Explicit DDL from the Arrow schema: one definition for both, and no reflection.
rec_lines = sa.Table(
    "rec_lines",
    _META,
    sa.Column("rec_id", sa.Text, nullable=False),  # the reconciliation (run) that found it
    *(sa.Column(f.name, _sa_type(f.type)) for f in LINE_SCHEMA),
)
_COLS = ("rec_id", *LINE_SCHEMA.names)


def _replace_if_outdated(conn: sa.Connection) -> None:
    """`rec_lines` holds only the latest reconciliation, so a table of an older layout (fewer
    columns) is dropped and created anew rather than migrated."""
    have = {
        r[0]
        for r in conn.exec_driver_sql(
            """SELECT column_name FROM information_schema.columns
               WHERE table_name = 'rec_lines' AND table_schema = current_schema()"""
        )
    }
    if have and have != set(_COLS):
        conn.exec_driver_sql("DROP TABLE rec_lines")


def store_lines(db: StagingDB, lines: pa.Table, rec_id: str) -> int:
    """Replace the content of `rec_lines` with these lines (one transaction)."""
    table = lines.select(LINE_SCHEMA.names).cast(LINE_SCHEMA)
    table = table.add_column(0, "rec_id", pa.array([rec_id] * table.num_rows, pa.string()))
    cols = ", ".join(_COLS)
    with db.begin() as conn:
        _replace_if_outdated(conn)
        _META.create_all(conn)
        conn.exec_driver_sql("DELETE FROM rec_lines")
        if not table.num_rows:
            return 0
        raw = conn.connection.driver_connection
        if db.is_duckdb:
            raw.register("rec_lines_arrow", table)
            try:
                raw.execute(f"INSERT INTO rec_lines ({cols}) SELECT {cols} FROM rec_lines_arrow")
            finally:
                raw.unregister("rec_lines_arrow")
        else:
            copy_arrow(conn, "rec_lines", table.select(list(_COLS)))
    return table.num_rows


def load_lines(db: StagingDB, legal_entity: str | None = None) -> pa.Table:
    """The stored exception lines (`LINE_SCHEMA`), optionally of one legal entity."""
    with db.begin() as conn:
        _replace_if_outdated(conn)
        _META.create_all(conn)
    where = ""
    if legal_entity is not None:
        where = f" WHERE legal_entity = {sql_literal(legal_entity)}"
    inp = Input(
        "r_rec_lines", LINE_SCHEMA, f"SELECT {', '.join(LINE_SCHEMA.names)} FROM rec_lines{where}"
    )
    with duck_inputs(db, [inp], {}) as duck:
        return (
            duck.sql("SELECT * FROM r_rec_lines ORDER BY class, entry_id, source_file, row_no")
            .to_arrow_table()
            .cast(LINE_SCHEMA)
        )
