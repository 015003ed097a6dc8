"""Schema upgrades of the staging database and of the SQL-interface ERP tables, with Alembic.

Two tracks, each its own Alembic script directory under `staging_models/alembic/` and its own
version table, because the ERP tables live in another database:

- staging: `stagepost_alembic_version`; revision 0001 is the first release's tables (frozen
  DDL of git 9736e9d, `schema_meta` version 1), 0002 today's changes.
- erp: `stagepost_erp_alembic_version`; revision erp0001 is the first release's tables.

A fresh database is created from the SQLAlchemy metadata and stamped at head (one step, no
replay). An older one is never upgraded behind the operator's back: opening it raises
`SchemaVersionError` naming the command, `./dev upgrade` (installed: `stagepost-upgrade`),
which runs every missing revision in one transaction. Why not on start: several processes
(Dagster run workers, sensors, the UI) open the same PostgreSQL staging at once, and an
upgrade deserves a backup first and one deliberate run.

A database made before Alembic has no version table; which revision it is at is read from
what it has (`schema_meta`'s version for staging; the ERP tables for erp). When that revision
is already head (the ERP tables today) it is simply stamped.

duckdb-engine cannot reflect tables on SQLAlchemy 2.1, so revisions are explicit SQL (no
autogenerate); Alembic only needs an implementation class for the `duckdb` dialect name.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.ddl.impl import DefaultImpl
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from pydantic import SecretStr
from sqlalchemy.engine import Connection

#: What to run to upgrade; every refusal names it.
UPGRADE_COMMAND = "./dev upgrade (installed: stagepost-upgrade)"

_HERE = Path(__file__).resolve().parent / "alembic"
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

    @property
    def location(self) -> Path:
        return _HERE / self.name

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


def _staging_legacy(conn: Connection) -> str | None:
    """`schema_meta` version 1 (first release) or 2 (this morning's hand-written upgrade, which
    revision 0002 repeats idempotently) is revision 0001."""
    found = conn.execute(
        sa.text("SELECT value FROM schema_meta WHERE key = 'schema_version'")
    ).scalar()
    return "0001" if found in ("1", "2") else None


STAGING = Track("staging", "stagepost_alembic_version", "schema_meta", _staging_legacy, 7301)
ERP = Track("erp", "stagepost_erp_alembic_version", "erp_time_lines", lambda _c: "erp0001", 7302)


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


# -- the command ------------------------------------------------------------------------------


def _engine(url: str) -> sa.Engine:
    u = sa.make_url(url)
    if u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")
    return sa.create_engine(u)


def _missing_duckdb_file(url: str) -> bool:
    u = sa.make_url(url)
    return u.get_backend_name() == "duckdb" and not (
        u.database and u.database != ":memory:" and Path(u.database).exists()
    )


def _targets(args: argparse.Namespace) -> list[tuple[Track, str]]:
    from config.settings import current
    from staging_models.db import data_dir, default_staging_url, url_with_password

    s = current()
    staging = args.staging_url or s.staging_url or default_staging_url()
    out = [(STAGING, url_with_password(staging, _secret(s.staging_password)))]
    if not args.no_erp and s.erp_kind == "sql":
        # The demo ERP's default (pipelines' default_erp_url) when no URL is set.
        erp = args.erp_url or s.erp_url or f"duckdb:///{data_dir() / 'erp_interface.duckdb'}"
        out.append((ERP, url_with_password(erp, _secret(s.erp_password))))
    return out


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _create(track: Track) -> Callable[[Connection], None]:
    if track is STAGING:
        from staging_models.db import create_staging_tables

        return create_staging_tables
    from connectors.erp.sql_interface import metadata as erp_metadata

    return erp_metadata.create_all


def main(argv: list[str] | None = None) -> int:
    """`stagepost-upgrade` / `./dev upgrade`: upgrade the staging database and the SQL-interface
    ERP tables to this release's schema."""
    p = argparse.ArgumentParser(
        prog="stagepost-upgrade",
        description="Upgrade the staging database and the SQL-interface ERP tables to this "
        "release's schema (Alembic). Stop stagepost and back the databases up first. URLs "
        "default to STAGEPOST_STAGING_URL and STAGEPOST_ERP_URL (passwords from "
        "STAGEPOST_STAGING_PASSWORD, STAGEPOST_ERP_PASSWORD).",
    )
    p.add_argument("--staging-url", help="the staging database (default: as stagepost runs)")
    p.add_argument("--erp-url", help="the SQL-interface ERP database (STAGEPOST_ERP_KIND=sql)")
    p.add_argument("--no-erp", action="store_true", help="leave the ERP tables alone")
    p.add_argument("--check", action="store_true", help="only report; exit 1 if one is behind")
    p.add_argument("--history", action="store_true", help="list the revisions and exit")
    args = p.parse_args(argv)
    from staging_models.db import redact_url

    if args.history:
        for track in (STAGING, ERP):
            for s in reversed(list(track.script().walk_revisions())):
                print(f"{track.name} {s.revision} (after {s.down_revision or 'nothing'}): {s.doc}")
        return 0
    behind = False
    for track, url in _targets(args):
        where = redact_url(url)
        if _missing_duckdb_file(url):
            print(f"{track.name} {where}: does not exist: created at head on first use")
            continue
        engine = _engine(url)
        try:
            with engine.begin() as conn:
                if args.check:
                    st = state(conn, track)
                    behind |= st.kind != "head"
                    unstamped = ", no version table yet" if st.legacy else ""
                    print(f"{track.name} {where}: {st.kind} ({st.revision or '-'}{unstamped})")
                    continue
                for line in upgrade(conn, track, _create(track), where):
                    print(line)
        except SchemaVersionError as e:
            print(f"stagepost-upgrade: {e}", file=sys.stderr)
            return 2
        finally:
            engine.dispose()
    return 1 if behind else 0


if __name__ == "__main__":
    sys.exit(main())
