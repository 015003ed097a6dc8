"""Schema versions: a staging database of an older version is upgraded in place, a newer one
is refused (both backends)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from staging_models.db import SchemaVersionError, StagingDB
from staging_models.tables import SCHEMA_VERSION


def _set_version(db: StagingDB, version: int) -> None:
    with db.begin() as conn:
        conn.execute(
            sa.text("UPDATE schema_meta SET value = :v WHERE key = 'schema_version'"),
            {"v": str(version)},
        )


def _reopen(db: StagingDB) -> StagingDB:
    db.engine.dispose()
    return StagingDB(db.url)


def test_version_1_database_gains_the_window_message_column(any_db: StagingDB) -> None:
    """Version 1 had no posting_windows.message (the result went into note): upgrading adds
    it and keeps the rows."""
    with any_db.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE posting_windows DROP COLUMN message")
        conn.exec_driver_sql(
            "INSERT INTO posting_windows (window_id, config, status, note, started_at) "
            "VALUES ('W1', '{}', 'completed', 'Posted 2 documents', CURRENT_TIMESTAMP)"
        )
    _set_version(any_db, 1)
    db = _reopen(any_db)
    db.init_schema()
    assert db.scalar("SELECT value FROM schema_meta WHERE key = 'schema_version'") == str(
        SCHEMA_VERSION
    )
    assert db.scalar("SELECT note FROM posting_windows WHERE window_id = 'W1'") == (
        "Posted 2 documents"
    )
    assert db.scalar("SELECT message FROM posting_windows WHERE window_id = 'W1'") is None
    db.engine.dispose()


def test_newer_database_is_refused(any_db: StagingDB) -> None:
    _set_version(any_db, SCHEMA_VERSION + 1)
    db = _reopen(any_db)
    with pytest.raises(SchemaVersionError, match=f"has schema version {SCHEMA_VERSION + 1}"):
        db.init_schema()
    db.engine.dispose()
