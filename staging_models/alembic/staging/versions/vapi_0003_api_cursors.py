"""API pull cursors: api_cursors (one row per API source and dataset), schema_meta version 3

The cursor of each API pull (Harvest, Toggl, Clockify, Kimai), advanced only after the pulled
window is landed and committed. Idempotent like 0002.
"""

from alembic import op

revision = "0003_api_cursors"
down_revision = "0002"
branch_labels = None
depends_on = None

_TABLE = """CREATE TABLE IF NOT EXISTS api_cursors (
    source_name TEXT NOT NULL,
    dataset TEXT NOT NULL,
    cursor_at TIMESTAMP WITH TIME ZONE NOT NULL,
    window_from TIMESTAMP WITH TIME ZONE,
    window_to TIMESTAMP WITH TIME ZONE,
    mode TEXT NOT NULL,
    records INTEGER NOT NULL,
    load_id TEXT,
    file_name TEXT,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (source_name, dataset)
)"""


def upgrade() -> None:
    op.execute(_TABLE)
    op.execute("UPDATE schema_meta SET value = '3' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore the backup taken before upgrading")
