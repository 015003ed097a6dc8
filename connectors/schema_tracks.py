"""Schema revisions of a database with Alembic: one `Track` per set of tables that lives in
its own database (the staging database: `staging_models.migrations`; the SQL-interface ERP
tables: `connectors.erp.sql_interface`), each with its own script directory and version table.

A fresh database is created from the SQLAlchemy metadata and stamped at head (one step, no
replay). An older one is never upgraded behind the operator's back: opening it raises
`SchemaVersionError` naming the command, `./dev upgrade` (installed: `stagepost-upgrade`,
`staging_models.migrations`), which runs every missing revision in one transaction.

A database made before Alembic has no version table; which revision it is at is read from
what it has (`Track.legacy_revision`). When that revision is already head it is simply stamped.

duckdb-engine cannot reflect tables on SQLAlchemy 2.1, so revisions are explicit SQL (no
autogenerate); Alembic only needs an implementation class for the `duckdb` dialect name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command, op
from alembic.config import Config
from alembic.ddl.impl import DefaultImpl
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

#: What to run to upgrade; every refusal names it.
UPGRADE_COMMAND = "./dev upgrade (installed: stagepost-upgrade)"

_SCRIPTS: dict[str, ScriptDirectory] = {}


class DuckDBImpl(DefaultImpl):
    """Alembic's DDL implementation for duckdb-engine (registered by subclassing); DuckDB runs
    DDL inside transactions, so an upgrade commits whole or not at all."""

    __dialect__ = "duckdb"
    transactional_ddl = True


class SchemaVersionError(RuntimeError):
    """The database's schema is not this release's: upgrade it explicitly, or use the release
    that made it."""


@dataclass(frozen=True)
class Track:
    """One migrated set of tables: where its revisions are and how a pre-Alembic database
    shows which revision it is at."""

    name: str
    version_table: str
    marker_table: str  # every database of this track has it (pre-Alembic ones too)
    legacy_revision: Callable[[Connection], str | None]  # None: not ours / unknown
    lock_key: int  # PostgreSQL advisory lock: one schema change at a time
    location: Path  # the Alembic script directory (env.py, versions/)

    def config(self, conn: Connection | None = None) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(self.location))
        cfg.set_main_option("version_table", self.version_table)
        cfg.attributes["connection"] = conn
        return cfg

    def script(self) -> ScriptDirectory:
        """The track's revisions (read once per process: every fresh database needs them)."""
        if self.name not in _SCRIPTS:
            _SCRIPTS[self.name] = ScriptDirectory.from_config(self.config())
        return _SCRIPTS[self.name]

    def head(self) -> str:
        head = self.script().get_current_head()
        assert head is not None
        return head


def run_env(context) -> None:  # context: alembic.context (a module proxy)
    """The body of each track's env.py: run on the connection the caller passed in its own
    transaction (so the stamp of a pre-Alembic database and the upgrade commit together)."""
    cfg = context.config
    conn = cfg.attributes.get("connection")
    if conn is None:
        raise RuntimeError(f"run the upgrade through {UPGRADE_COMMAND}")
    context.configure(
        connection=conn, version_table=cfg.get_main_option("version_table"), transactional_ddl=True
    )
    with context.begin_transaction():
        context.run_migrations()


def read_sql(path: Path) -> list[str]:
    """The statements of a frozen .sql file (comment lines dropped, split at `;`)."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def run_frozen_sql(directory: Path) -> None:
    """A base revision's upgrade: the frozen `release1.sql` of `directory`, and on PostgreSQL its
    indexes (`release1_postgresql.sql`). Runs inside the revision's Alembic context."""
    for sql in read_sql(directory / "release1.sql"):
        op.execute(sql)
    if op.get_context().dialect.name == "postgresql":
        for sql in read_sql(directory / "release1_postgresql.sql"):
            op.execute(sql)


def _present(conn: Connection, *names: str) -> set[str]:
    """Which of these tables the current schema has (one query; duckdb-engine's has_table
    takes 15 ms a call)."""
    rows = conn.execute(
        sa.text(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name IN :names"
        ).bindparams(sa.bindparam("names", expanding=True)),
        {"names": list(names)},
    )
    return {r[0] for r in rows}


def _lock(conn: Connection, track: Track) -> None:
    """Two processes opening a new PostgreSQL database at once: one creates, the other waits
    and finds it at head (DuckDB allows one writing process per file anyway)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": track.lock_key})


@dataclass(frozen=True)
class State:
    kind: str  # fresh | head | behind | unknown
    revision: str | None  # where it is (None: fresh or unknown)
    legacy: bool  # no version table yet: `revision` was read from its tables


def state(conn: Connection, track: Track) -> State:
    """Where the database is on `track`."""
    present = _present(conn, track.version_table, track.marker_table)
    current = None
    if track.version_table in present:
        current = conn.execute(  # one row: the history is linear
            sa.text(f"SELECT max(version_num) FROM {track.version_table}")
        ).scalar()
    legacy = current is None
    if legacy:
        if track.marker_table not in present:
            return State("fresh", None, False)
        current = track.legacy_revision(conn)
    script = track.script()
    if current is None or current not in {s.revision for s in script.walk_revisions()}:
        return State("unknown", current, legacy)
    return State("head" if current == script.get_current_head() else "behind", current, legacy)


def _refusal(where: str, track: Track, st: State) -> SchemaVersionError:
    if st.kind == "unknown":
        return SchemaVersionError(
            f"{track.name} database {where} is at schema revision {st.revision or '(unknown)'}, "
            f"which this stagepost does not know (head {track.head()}): it was made by a newer "
            "stagepost; use that release"
        )
    made = " (made before Alembic)" if st.legacy else ""
    return SchemaVersionError(
        f"{track.name} database {where} is at schema revision {st.revision}{made}, this "
        f"stagepost needs {track.head()}: back it up, stop stagepost, and run {UPGRADE_COMMAND}"
    )


def _stamp(conn: Connection, track: Track, revision: str) -> None:
    ctx = MigrationContext.configure(conn, opts={"version_table": track.version_table})
    ctx.stamp(track.script(), revision)


def ensure_schema(
    conn: Connection, track: Track, create: Callable[[Connection], None], where: str
) -> str:
    """Open a database on start: create a fresh one at head, stamp a pre-Alembic one already at
    head, refuse any other (`SchemaVersionError` naming the upgrade command). Returns the
    state's kind."""
    _lock(conn, track)
    st = state(conn, track)
    if st.kind == "fresh":
        create(conn)
        _stamp(conn, track, "head")
    elif st.kind == "head" and st.legacy:
        _stamp(conn, track, "head")
    elif st.kind != "head":
        raise _refusal(where, track, st)
    return st.kind


def upgrade(
    conn: Connection, track: Track, create: Callable[[Connection], None], where: str
) -> list[str]:
    """Bring the database to head inside `conn`'s transaction; the lines say what was done."""
    _lock(conn, track)
    st = state(conn, track)
    head = track.head()
    if st.kind == "fresh":
        create(conn)
        _stamp(conn, track, "head")
        return [f"{track.name} {where}: no tables yet: created at head {head}"]
    if st.kind == "unknown":
        raise _refusal(where, track, st)
    out = []
    if st.legacy:
        out.append(
            f"{track.name} {where}: no version table (made before Alembic): "
            f"its tables are revision {st.revision}"
        )
        _stamp(conn, track, st.revision or "")
    steps = list(reversed(list(track.script().iterate_revisions(head, st.revision))))
    for s in steps:
        out.append(f"{track.name} {where}: upgrade {s.down_revision} -> {s.revision}: {s.doc}")
    command.upgrade(track.config(conn), "head")
    out.append(f"{track.name} {where}: at head {head}" + ("" if steps else " (nothing to do)"))
    return out
