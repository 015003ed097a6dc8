"""In-place upgrades of an existing staging database, one schema version at a time.

`StagingDB.init_schema` creates any table that is missing (so a step may assume every
current table exists), then runs the steps from the version the database records up to
`SCHEMA_VERSION`, all in one transaction. Each step is
plain DDL both DuckDB and PostgreSQL run, idempotent (`IF NOT EXISTS`), so a step that was
interrupted can run again. Add a step here whenever `SCHEMA_VERSION` is bumped.
"""

from __future__ import annotations

#: UPGRADES[n]: the statements that take a version-n database to version n+1.
UPGRADES: dict[int, tuple[str, ...]] = {
    # 1 -> 2: posting_windows.note keeps the operator's note; the result message gets its own
    # column (version 1 wrote the result into note).
    1: ("ALTER TABLE posting_windows ADD COLUMN IF NOT EXISTS message TEXT",),
}


def upgrade_steps(found: int, target: int) -> list[str]:
    """The statements from version `found` to `target`; `KeyError` if a step is missing."""
    return [sql for v in range(found, target) for sql in UPGRADES[v]]
