"""Schema upgrades of the staging database and of the SQL-interface ERP tables, with Alembic:
the staging track and the `stagepost-upgrade` command (`./dev upgrade`).

Two tracks (`connectors.schema_tracks`), each its own Alembic script directory and version
table, because the ERP tables live in another database:

- staging (here): `stagepost_alembic_version`, scripts in `staging_models/alembic/staging/`;
  revision 0001 is the first release's tables (frozen DDL of git 9736e9d, `schema_meta`
  version 1), 0002 today's changes.
- erp (`connectors.erp.sql_interface.ERP`): `stagepost_erp_alembic_version`, scripts in
  `connectors/erp/alembic/`; revision erp0001 is the first release's tables.

Why no upgrade on start: several processes (Dagster run workers, sensors, the UI) open the same
PostgreSQL staging at once, and an upgrade deserves a backup first and one deliberate run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import Connection

from connectors.erp.sql_interface import ERP
from connectors.erp.sql_interface import metadata as erp_metadata
from connectors.schema_tracks import (  # some re-exported: staging_models.db and tests use them
    SchemaVersionError,
    Track,
    ensure_schema,
    state,
    upgrade,
)


def _staging_legacy(conn: Connection) -> str | None:
    """`schema_meta` version 1 (first release) or 2 (this morning's hand-written upgrade, which
    revision 0002 repeats idempotently) is revision 0001."""
    found = conn.execute(
        sa.text("SELECT value FROM schema_meta WHERE key = 'schema_version'")
    ).scalar()
    return "0001" if found in ("1", "2") else None


STAGING = Track(
    "staging",
    "stagepost_alembic_version",
    "schema_meta",
    _staging_legacy,
    7301,
    Path(__file__).resolve().parent / "alembic" / "staging",
)


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


__all__ = [
    "ERP",
    "STAGING",
    "SchemaVersionError",
    "Track",
    "ensure_schema",
    "main",
    "state",
    "upgrade",
]


if __name__ == "__main__":
    sys.exit(main())
