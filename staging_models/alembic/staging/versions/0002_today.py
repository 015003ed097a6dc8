"""today's changes: posting_windows.message, the full-export tables, landing_purges

Everything between release 1 (9736e9d) and Alembic: posting_windows.message (the window's
result; release 1 wrote it into note, old rows keep theirs there), the full-export deletion
check's tables (full_exports, full_export_vanished, full_export_events), retention's
per-load counts of purged raw rows (landing_purges), and schema_meta
version 2 (release 1 refuses an upgraded database). loads.status may now be `refused`: text,
no DDL. Idempotent, so a database this morning's hand-written upgrade (schema_meta version 2)
already touched goes through it too. An upgraded posting_windows has `message` last.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TABLES = (
    """CREATE TABLE IF NOT EXISTS full_exports (
    load_id TEXT NOT NULL,
    file_name TEXT NOT NULL,
    date_from DATE,
    date_to DATE,
    range_source TEXT NOT NULL,
    scope_entries INTEGER NOT NULL,
    vanished_entries INTEGER NOT NULL,
    tombstoned_entries INTEGER NOT NULL,
    max_share TEXT NOT NULL,
    status TEXT NOT NULL,
    tombstone_load_id TEXT,
    judged_at TIMESTAMP WITH TIME ZONE NOT NULL,
    decided_at TIMESTAMP WITH TIME ZONE,
    decided_by TEXT,
    decision_reason TEXT,
    PRIMARY KEY (load_id)
)""",
    """CREATE TABLE IF NOT EXISTS full_export_vanished (
    load_id TEXT NOT NULL,
    row_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    tombstone_version INTEGER,
    status TEXT NOT NULL,
    PRIMARY KEY (load_id, row_key)
)""",
    """CREATE TABLE IF NOT EXISTS landing_purges (
    load_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    rows_purged INTEGER NOT NULL,
    purged_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (load_id)
)""",
    """CREATE TABLE IF NOT EXISTS full_export_events (
    load_id TEXT NOT NULL,
    file_name TEXT NOT NULL,
    event TEXT NOT NULL,
    event_at TIMESTAMP WITH TIME ZONE NOT NULL,
    actor TEXT,
    reason TEXT,
    vanished_entries INTEGER,
    tombstoned_entries INTEGER
)""",
)


def upgrade() -> None:
    op.execute("ALTER TABLE posting_windows ADD COLUMN IF NOT EXISTS message TEXT")
    for sql in _TABLES:
        op.execute(sql)
    op.execute("UPDATE schema_meta SET value = '2' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore the backup taken before upgrading")
