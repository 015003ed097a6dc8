"""release 1 ERP interface tables (git 9736e9d)

Frozen DDL (release1.sql, PostgreSQL indexes in release1_postgresql.sql): SQL-interface ERP
tables made by the first release are exactly these, so such a database is stamped here.
"""

from pathlib import Path

from connectors.schema_tracks import run_frozen_sql

revision = "erp0001"
down_revision = None
branch_labels = None
depends_on = None

_DIR = Path(__file__).resolve().parent.parent


def upgrade() -> None:
    run_frozen_sql(_DIR)


def downgrade() -> None:
    raise NotImplementedError("the base revision is not dropped: delete the database instead")
