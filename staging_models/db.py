"""The staging database: one SQLAlchemy engine, DuckDB embedded or PostgreSQL.

Set-based work is written as portable SQL run through `text()`. Bulk loads go
through DuckDB: straight into the staging file when staging is DuckDB, or as a
CSV stream into PostgreSQL's COPY otherwise. No row passes through Python.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url

from config.settings import current
from connectors.sql import copy_csv, read_frame, sql_literal
from staging_models.migrations import (  # SchemaVersionError: raised by init_schema
    STAGING,
    SchemaVersionError,  # noqa: F401
    ensure_schema,
)
from staging_models.schema import SCHEMA_VERSION, metadata
from staging_models.tables import schema_meta


def create_staging_tables(conn: Connection) -> None:
    """A fresh staging database at head: every table, `schema_meta`'s version (which releases
    before Alembic check). `staging_models.migrations` stamps it."""
    metadata.create_all(conn)
    conn.execute(schema_meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))


def data_dir() -> Path:
    """Root of local state (staging file, inbox, reports): `$STAGEPOST_DATA_DIR` or ./data."""
    return current().data_dir.resolve()


def default_staging_url(base: str | Path | None = None) -> str:
    """`duckdb:///<data dir>/staging.duckdb`."""
    return f"duckdb:///{(Path(base) if base else data_dir()) / 'staging.duckdb'}"


def url_with_password(url: str, password: str | None) -> str:
    """The connection URL with a password kept elsewhere (an EnvVar) put in; for the engine only."""
    if not password:
        return url
    return make_url(url).set(password=password).render_as_string(hide_password=False)


def redact_url(url: str) -> str:
    """The URL as it may appear in logs and metadata: never with its password."""
    return make_url(url).render_as_string(hide_password=True)


def set_duckdb_threads(duck: duckdb.DuckDBPyConnection, n: int) -> int:
    """Run DuckDB on `n` threads (the setting holds for the whole database instance, every
    connection); returns the previous count, to set back."""
    before = int(duck.sql("SELECT current_setting('threads')").fetchall()[0][0])
    duck.execute(f"SET threads = {int(n)}")
    return before


class StagingDB:
    """A staging database. Create one per process and URL (see `staging_db`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        u = make_url(url)
        self.dialect = u.get_backend_name()
        if self.dialect == "duckdb":
            if u.database and u.database != ":memory:":
                Path(u.database).parent.mkdir(parents=True, exist_ok=True)
            # DuckDB takes 80% of RAM by default; a limit makes it spill to disk instead. Set
            # on each connection, not as open-time config: DuckDB refuses a second connection
            # to a file opened with another config (the migrations' engine has none).
            settings = [f"SET memory_limit = {sql_literal(current().duckdb_memory_limit)}"]
            if temp := current().duckdb_temp_directory:
                settings.append(f"SET temp_directory = {sql_literal(str(temp))}")
            self.engine = sa.create_engine(url)

            @sa.event.listens_for(self.engine, "connect")
            def _session(dbapi_conn, _record) -> None:
                dbapi_conn.execute("SET enable_progress_bar = false")  # none in logs and tests
                for statement in settings:
                    dbapi_conn.execute(statement)

        elif self.dialect == "postgresql":
            if u.drivername == "postgresql":
                u = u.set(drivername="postgresql+psycopg")
            self.engine = sa.create_engine(u, pool_pre_ping=True)

            @sa.event.listens_for(self.engine, "connect")
            def _session(dbapi_conn, _record) -> None:
                with dbapi_conn.cursor() as cur:
                    # DuckDB works in UTC; so does staging here.
                    cur.execute("SET TIME ZONE 'UTC'")
                    # No JIT compilation: stagepost's statements are set-based scans and joins
                    # that run once, and at 1M entries their costs pass the JIT thresholds:
                    # compiling (with inlining and optimization) took 3.0 s of the 10 s
                    # candidate statement, and as much again in each parallel worker.
                    cur.execute("SET jit = off")
                dbapi_conn.commit()
        else:
            raise ValueError(
                f"unsupported staging database {redact_url(url)}: use duckdb or postgresql"
            )
        self._schema_ready = False

    @property
    def is_duckdb(self) -> bool:
        return self.dialect == "duckdb"

    def split_list_sql(self, expr: str, sep: str = ";") -> str:
        """SQL turning a separated text list into rows (the one dialect difference we need)."""
        fn = "string_split" if self.is_duckdb else "string_to_array"
        return f"unnest({fn}({expr}, '{sep}'))"

    def json_object_sql(self, pairs: list[tuple[str, str]]) -> str:
        """SQL building a JSON object text from (key, text expression) pairs."""
        fn = "json_object" if self.is_duckdb else "json_build_object"
        args = ", ".join(f"'{k}', {v}" for k, v in pairs)
        return f"CAST({fn}({args}) AS VARCHAR)"

    def __repr__(self) -> str:
        return f"StagingDB({redact_url(self.url)})"

    # -- schema -----------------------------------------------------------------------------

    def init_schema(self) -> None:
        """Create a fresh database at the head schema revision; refuse one at another revision
        (`SchemaVersionError` naming the upgrade command: see `staging_models.migrations`)."""
        if self._schema_ready:
            return
        with self.engine.begin() as conn:
            ensure_schema(conn, STAGING, create_staging_tables, redact_url(self.url))
        self._schema_ready = True

    def drop_all(self) -> None:
        """Drop every stagepost table (tests and demos only)."""
        with self.engine.begin() as conn:
            metadata.drop_all(conn)
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {STAGING.version_table}")
        self._schema_ready = False

    # -- queries ----------------------------------------------------------------------------

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction: everything inside commits together or not at all."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def threads(self, n: int) -> Iterator[None]:
        """DuckDB runs on `n` threads inside (its thread count is per database, so for work
        this process has to itself, like a posting window); a no-op on PostgreSQL."""
        if not self.is_duckdb:
            yield
            return
        with self.engine.connect() as conn:
            before = set_duckdb_threads(conn.connection.driver_connection, n)
        try:
            yield
        finally:
            with self.engine.connect() as conn:
                set_duckdb_threads(conn.connection.driver_connection, before)

    def analyze(self, conn: Connection, *tables: str, target: int | None = None) -> None:
        """Fresh planner statistics for tables a bulk step just wrote, before anything reads
        them (PostgreSQL only: DuckDB keeps its own statistics current as it writes).

        PostgreSQL plans from `ANALYZE` statistics; autovacuum gathers them late, or never
        (temporary tables, or autovacuum off). A table planned as empty, or with the state
        mix it had before the step, leads the planner into nested loops over thousands of
        rows: 5,100 landed entries took 21 s to validate instead of 0.3 s. Run inside the
        writer's transaction, ANALYZE sees its uncommitted rows, and its cost is bounded
        (a sample of at most 300 x default_statistics_target rows), but grows with the columns:
        a table may be given as `name (col, ...)` to analyze only the columns queries join and
        filter it on. `target`: see `analyze`."""
        analyze(conn, *tables, target=target)

    def query_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        with self.engine.connect() as conn:
            return read_frame(conn, sql, params)

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), dict(params or {})).scalar()

    # -- bulk load ----------------------------------------------------------------------------

    @contextmanager
    def duck(self, conn: Connection) -> Iterator[duckdb.DuckDBPyConnection]:
        """A DuckDB connection to parse files with: the staging connection itself when staging
        is DuckDB (so `insert_select` never copies), an in-memory one otherwise."""
        if self.is_duckdb:
            yield conn.connection.driver_connection
            return
        mem = duckdb.connect()
        try:
            yield mem
        finally:
            mem.close()

    def insert_select(
        self,
        conn: Connection,
        duck: duckdb.DuckDBPyConnection,
        table: str,
        columns: list[str],
        select_sql: str,
    ) -> None:
        """INSERT INTO table(columns) the rows of a DuckDB SELECT, inside `conn`'s transaction."""
        col_list = ", ".join(columns)
        if self.is_duckdb:
            duck.execute(f"INSERT INTO {table} ({col_list}) {select_sql}")
            return
        # Through a file DuckDB writes, streamed in 1 MiB chunks: the rows are never all in memory.
        with tempfile.TemporaryDirectory(prefix="stagepost-copy-") as tmp:
            csv_path = Path(tmp) / "rows.csv"
            duck.execute(
                f"COPY ({select_sql}) TO {sql_literal(str(csv_path))} (FORMAT csv, HEADER false, "
                "TIMESTAMPFORMAT '%Y-%m-%d %H:%M:%S.%f%z')"
            )
            with open(csv_path, "rb") as f:
                copy_csv(conn, table, columns, iter(partial(f.read, 1 << 20), b""))


#: Statistics target for scratch tables a step creates and reads a few times by key: the
#: sample is 300 x target rows, and at the default (100) ANALYZE of a 50,000-line posting
#: plan took 1 s (0.26 s for its key columns only, 0.04 s for those at 10).
SCRATCH_STATISTICS_TARGET = 10


def analyze(conn: Connection, *tables: str, target: int | None = None) -> None:
    """ANALYZE each table (`name` or `name (col, ...)`) on a PostgreSQL connection; with
    `target`, from a sample of 300 x `target` rows instead of the server's default (100):
    enough for the join keys and states of a scratch table (its keys are unique, or nearly).
    The setting is restored afterwards, so the transaction's own later ANALYZEs keep theirs.
    Does nothing on DuckDB, which keeps its statistics current as it writes."""
    if conn.dialect.name == "duckdb":
        return
    if target is None:
        for table in tables:
            conn.exec_driver_sql(f"ANALYZE {table}")
        return
    before = conn.exec_driver_sql("SHOW default_statistics_target").scalar_one()
    conn.exec_driver_sql(f"SET LOCAL default_statistics_target = {int(target)}")
    for table in tables:
        conn.exec_driver_sql(f"ANALYZE {table}")
    # (an ANALYZE that fails aborts the transaction, and the SET LOCAL with it)
    conn.exec_driver_sql(f"SET LOCAL default_statistics_target = {int(before)}")


_DBS: dict[str, StagingDB] = {}
_LOCK = threading.Lock()


def staging_db(url: str | None = None) -> StagingDB:
    """The process-wide `StagingDB` for a URL, with its schema ready."""
    url = url or current().staging_url or default_staging_url()
    with _LOCK:
        db = _DBS.get(url)
        if db is None:
            db = _DBS[url] = StagingDB(url)
    db.init_schema()
    return db


def dispose_all() -> None:
    """Close every cached engine (DuckDB releases its file lock)."""
    with _LOCK:
        for db in _DBS.values():
            db.engine.dispose()
        _DBS.clear()
