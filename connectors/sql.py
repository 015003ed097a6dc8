"""Set-based SQL helpers for DuckDB and PostgreSQL: frames into temporary tables, queries to frames.

Posting moves tens of thousands of lines per second: rows never pass through a
Python loop. A frame becomes an Arrow table with an explicit schema (Decimal
stays exact: a value that would lose digits raises), then DuckDB scans it in
place and PostgreSQL receives it through COPY as CSV. The temporary table lives
until the end of the transaction (PostgreSQL `ON COMMIT DROP`; DuckDB: dropped
first, so a reused connection never sees stale rows).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from datetime import date

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.engine import Connection

#: SQL type of each Arrow type used by the loaders.
_SQL_TYPES: dict[str, str] = {
    "string": "TEXT",
    "date32[day]": "DATE",
    "int64": "BIGINT",
    "int32": "INTEGER",
    "bool": "BOOLEAN",
}


def _sql_type(t: pa.DataType) -> str:
    if pa.types.is_decimal(t):
        return f"NUMERIC({t.precision},{t.scale})"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP WITH TIME ZONE"
    return _SQL_TYPES[str(t)]


def arrow_type(t: sa.types.TypeEngine) -> pa.DataType:
    """The Arrow type of a SQL column type (text, integer, date, boolean, exact numeric)."""
    if isinstance(t, sa.Numeric) and not isinstance(t, sa.Float):
        return pa.decimal128(t.precision, t.scale)
    if isinstance(t, sa.Integer):
        return pa.int64()
    if isinstance(t, sa.Date):
        return pa.date32()
    if isinstance(t, sa.Boolean):
        return pa.bool_()
    if isinstance(t, sa.String):
        return pa.string()
    raise TypeError(f"no Arrow type for {t!r}")


def arrow_schema(table: sa.Table, names: Sequence[str]) -> pa.Schema:
    """The Arrow schema of `names` columns of `table`: the table stays the one definition of
    each column's type."""
    fields = []
    for name in names:
        try:
            fields.append((name, arrow_type(table.c[name].type)))
        except TypeError as e:
            raise TypeError(f"{table.name}.{name}: {e}") from None
    return pa.schema(fields)


def to_arrow(df: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """The frame's columns of `schema`, converted exactly (no float may become a decimal)."""
    for f in schema:
        if f.name not in df.columns:
            raise ValueError(f"missing column {f.name!r}")
        if pa.types.is_decimal(f.type) and pd.api.types.is_float_dtype(df[f.name].dtype):
            raise TypeError(f"column {f.name!r} must hold Decimal values, not floats")
    return pa.Table.from_pandas(
        df[list(schema.names)], schema=schema, preserve_index=False, nthreads=1
    )


def load_temp(conn: Connection, name: str, df: pd.DataFrame, schema: pa.Schema) -> int:
    """Create temporary table `name` with `schema`'s columns plus `ord` (row order) and fill it.

    Returns the number of rows loaded.
    """
    table = to_arrow(df, schema)
    cols = ", ".join(f"{f.name} {_sql_type(f.type)}" for f in schema)
    names = ", ".join(schema.names)
    if conn.dialect.name == "duckdb":
        duck = conn.connection.driver_connection
        duck.execute(f"DROP TABLE IF EXISTS {name}")
        duck.execute(f"CREATE TEMP TABLE {name} ({cols}, ord BIGINT)")
        view = f"_arrow_{name}"
        duck.register(view, table)
        try:
            duck.execute(
                f"INSERT INTO {name} SELECT {names}, ROW_NUMBER() OVER () AS ord FROM {view}"
            )
        finally:
            duck.unregister(view)
        return table.num_rows
    # One round trip (psycopg sends parameterless statements together).
    conn.exec_driver_sql(
        f"DROP TABLE IF EXISTS {name}; "
        f"CREATE TEMP TABLE {name} ({cols}, ord BIGSERIAL) ON COMMIT DROP"
    )
    if table.num_rows:
        copy_arrow(conn, name, table)
    return table.num_rows


def copy_csv(
    conn: Connection, name: str, columns: Sequence[str], chunks: Iterable[bytes | memoryview]
) -> None:
    """PostgreSQL: COPY headerless CSV `chunks` into `name`'s `columns`, inside `conn`'s
    transaction. The one path by which rows enter PostgreSQL in bulk (`copy_arrow`, and
    `StagingDB.insert_select` streaming a CSV file DuckDB wrote)."""
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        with cur.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN (FORMAT csv)") as cp:
            for chunk in chunks:
                cp.write(chunk)


def copy_arrow(conn: Connection, name: str, table: pa.Table) -> None:
    """PostgreSQL: COPY an Arrow table into `name` (its columns, by name) as CSV, one round
    trip and no Python loop over rows."""
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, write_options=pacsv.WriteOptions(include_header=False))
    copy_csv(conn, name, table.column_names, [buf.getbuffer()])


def insert_arrow(conn: Connection, name: str, table: pa.Table) -> None:
    """INSERT an Arrow table into table `name` (its columns, by name) inside `conn`'s
    transaction, in one statement: DuckDB scans the Arrow table in place, PostgreSQL takes it
    through COPY (`copy_arrow`). No Python object per value, no statement per row."""
    if not table.num_rows:
        return
    quoted = [quote_ident(c) for c in table.column_names]  # `at`, `day` & co. are words
    if conn.dialect.name != "duckdb":
        buf = io.BytesIO()
        pacsv.write_csv(table, buf, write_options=pacsv.WriteOptions(include_header=False))
        copy_csv(conn, name, quoted, [buf.getbuffer()])
        return
    duck = conn.connection.driver_connection
    view = f"_arrow_{name}"
    cols = ", ".join(quoted)
    duck.register(view, table)
    try:
        duck.execute(f"INSERT INTO {name} ({cols}) SELECT {cols} FROM {view}")
    finally:
        duck.unregister(view)


def load_ids(conn: Connection, name: str, ids: Sequence[str]) -> int:
    """A temporary one-column table `name(external_id)` holding `ids`."""
    frame = pd.DataFrame({"external_id": pd.Series(list(ids), dtype=object)})
    return load_temp(conn, name, frame, pa.schema([("external_id", pa.string())]))


def read_frame(conn: Connection, sql: str, params: dict | None = None) -> pd.DataFrame:
    """Rows of a text() query as a DataFrame; decimals come back as `Decimal`."""
    result = conn.execute(sa.text(sql), dict(params or {}))
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def sql_literal(value: str | date) -> str:
    """A SQL literal of a date or a string (standard quoting, valid in DuckDB and PostgreSQL)."""
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    """A quoted SQL identifier (any column name a vendor file brings, quotes included)."""
    return '"' + name.replace('"', '""') + '"'


_NAMED = re.compile(r"(?<![:\w]):(\w+)")


def copy_out_arrow(conn: Connection, sql: str, params: dict | None, schema: pa.Schema) -> pa.Table:
    """PostgreSQL: the rows of query `sql` (`:name` parameters, bound by psycopg on the client:
    COPY takes none) as an Arrow table of `schema` (its columns, in the query's order), through
    `COPY (...) TO STDOUT` as CSV: one round trip, no Python object per value."""
    statement = _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))
    buf = bytearray()
    with conn.connection.driver_connection.cursor() as cur:
        with cur.copy(f"COPY ({statement}) TO STDOUT (FORMAT csv)", dict(params or {})) as cp:
            for chunk in cp:
                buf += chunk
    if not buf:
        return schema.empty_table()
    return pacsv.read_csv(
        io.BytesIO(buf),
        read_options=pacsv.ReadOptions(column_names=schema.names),
        convert_options=pacsv.ConvertOptions(
            column_types=schema,
            strings_can_be_null=True,  # NULL is an unquoted empty field ...
            quoted_strings_can_be_null=False,  # ... an empty string a quoted one
            true_values=["t"],
            false_values=["f"],
        ),
    )


def fetch_frame(
    conn: Connection,
    sql: str,
    params: dict | None = None,
    *,
    arrow_dtypes: bool = False,
    schema: pa.Schema | None = None,
) -> pd.DataFrame:
    """Like `read_frame`, fast on DuckDB (the result goes out as Arrow instead of row by row
    through SQLAlchemy) and on PostgreSQL where the columns' `schema` is given with
    `arrow_dtypes` (COPY TO, `copy_out_arrow`). `:name` parameters.

    Columns hold `Decimal`, `date` and `str` objects; with `arrow_dtypes` they stay Arrow-backed
    (`pd.ArrowDtype`: scalars are still Decimal/date/str, nulls are `pd.NA`), which saves
    building a Python object per value when the frame goes straight back to Arrow.
    """
    if conn.dialect.name == "duckdb":
        table = fetch_arrow(conn, sql, params)
    elif schema is not None and arrow_dtypes:
        table = fetch_arrow(conn, sql, params, schema)
    else:
        return read_frame(conn, sql, params)
    return table.to_pandas(types_mapper=pd.ArrowDtype) if arrow_dtypes else table.to_pandas()


def fetch_arrow(
    conn: Connection, sql: str, params: dict | None = None, schema: pa.Schema | None = None
) -> pa.Table:
    """The rows of query `sql` (`:name` parameters) as an Arrow table, with no Python object
    per value: DuckDB hands its result over as Arrow; PostgreSQL sends it through COPY TO
    (`copy_out_arrow`, which needs the columns' `schema`)."""
    if conn.dialect.name == "duckdb":
        duck = conn.connection.driver_connection
        table = duck.sql(_NAMED.sub(r"$\1", sql), params=dict(params or {})).to_arrow_table()
        return table if schema is None else table.cast(schema)
    if schema is None:
        raise ValueError("fetch_arrow on PostgreSQL needs the columns' schema")
    return copy_out_arrow(conn, sql, params, schema)
