"""release 1 schema (git 9736e9d): the staging tables, schema_meta version 1

Frozen DDL (release1.sql, PostgreSQL indexes in release1_postgresql.sql): a database made
by the first release has exactly these tables.
"""

from pathlib import Path

from alembic import op

from connectors.schema_tracks import run_frozen_sql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_DIR = Path(__file__).resolve().parent.parent


def upgrade() -> None:
    run_frozen_sql(_DIR)
    op.execute("INSERT INTO schema_meta (key, value) VALUES ('schema_version', '1')")


def downgrade() -> None:
    raise NotImplementedError("the base revision is not dropped: delete the database instead")
