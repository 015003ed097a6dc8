"""posting batches: a batch the ERP answered in full is confirmed once, not line by line

`posting_batches` holds one row per batch a posting window handed to the ERP (state sent,
confirmed or failed; see `staging_models/ledger_tables.py`). A line `sent` whose batch is
`confirmed` reads as confirmed (`ledger_rows`). Nothing existing changes and nothing is
backfilled: ledger rows written before this revision have no batch row, so their own state
stays their state. schema_meta version 6.
"""

from alembic import op

revision = "0006_posting_batches"
down_revision = "0005_vendor_columns"
branch_labels = None
depends_on = None

_TS = "TIMESTAMP WITH TIME ZONE"


def upgrade() -> None:
    op.execute(
        f"""CREATE TABLE IF NOT EXISTS posting_batches (
    batch_id TEXT NOT NULL,
    document TEXT NOT NULL,
    window_id TEXT NOT NULL,
    state TEXT NOT NULL,
    lines INTEGER NOT NULL,
    sent_at {_TS} NOT NULL,
    settled_at {_TS},
    PRIMARY KEY (batch_id)
)"""
    )
    op.execute("UPDATE schema_meta SET value = '6' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore the backup taken before upgrading")
