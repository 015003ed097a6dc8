"""release 1 ERP interface tables (git 9736e9d)

Frozen DDL (release1.sql, PostgreSQL indexes in release1_postgresql.sql): SQL-interface ERP
tables made by the first release are exactly these, so such a database is stamped here.
"""

from pathlib import Path

from alembic import op

from connectors.schema_tracks import read_sql

revision = "erp0001"
down_revision = None
branch_labels = None
depends_on = None

_DIR = Path(__file__).resolve().parent.parent


def upgrade() -> None:
    for sql in read_sql(_DIR / "release1.sql"):
        op.execute(sql)
    if op.get_context().dialect.name == "postgresql":
        for sql in read_sql(_DIR / "release1_postgresql.sql"):
            op.execute(sql)


def downgrade() -> None:
    raise NotImplementedError("the base revision is not dropped: delete the database instead")
