"""billing holds on projects; the outbound delivery ledger (status fed back to the PSA/CRM)

Projects gain three optional columns (`billing_hold`, `billing_hold_reason`,
`billing_hold_since`; in the content hash only when set, so old rows version nothing): while a
project is held, posting windows hold its invoices. Three new tables record outbound
deliveries (`outbound_deliveries`), what each record looked like when last delivered
(`outbound_ledger`) and webhook pushes owed (`outbound_dead_letters`); see
`staging_models/outbound_tables.py`. schema_meta version 8.
"""

from alembic import op

revision = "0008_holds_feedback"
down_revision = "0007_project_manager"
branch_labels = None
depends_on = None

_TS = "TIMESTAMP WITH TIME ZONE"

_PROJECT_COLUMNS = (
    ("billing_hold", "BOOLEAN"),
    ("billing_hold_reason", "TEXT"),
    ("billing_hold_since", "DATE"),
)


def upgrade() -> None:
    for table in ("land_projects", "stg_projects"):
        for name, kind in _PROJECT_COLUMNS:
            op.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {kind}")
    # The landing table keeps the raw text of every non-text column, after the typed ones.
    for name in ("raw_billing_hold", "raw_billing_hold_since"):
        op.execute(f"ALTER TABLE land_projects ADD COLUMN IF NOT EXISTS {name} TEXT")
    op.execute(
        f"""CREATE TABLE IF NOT EXISTS outbound_deliveries (
    feed TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    status TEXT NOT NULL,
    full_resend BOOLEAN NOT NULL,
    records INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    files TEXT,
    target TEXT,
    message TEXT,
    created_at {_TS} NOT NULL,
    delivered_at {_TS},
    PRIMARY KEY (feed, sequence)
)"""
    )
    op.execute(
        f"""CREATE TABLE IF NOT EXISTS outbound_ledger (
    feed TEXT NOT NULL,
    record_key TEXT NOT NULL,
    record_hash TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    delivered_at {_TS} NOT NULL,
    PRIMARY KEY (feed, record_key)
)"""
    )
    op.execute(
        f"""CREATE TABLE IF NOT EXISTS outbound_dead_letters (
    feed TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    endpoint TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    created_at {_TS} NOT NULL,
    replayed_at {_TS},
    PRIMARY KEY (feed, sequence)
)"""
    )
    op.execute("UPDATE schema_meta SET value = '8' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore the backup taken before upgrading")
