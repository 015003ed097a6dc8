"""PostgreSQL storage: half of each versions-table page left free (HOT state updates); ledgers by window

Validation sets the `state` of every version it judges; PostgreSQL writes a new copy of each
row, and with full pages (fill factor 100, the default) every copy went to a new page with a
new primary-key entry (26 s for 851,191 entries; 8.6 s with the copies on their own pages,
`staging_models.tables.VERSIONS_FILLFACTOR`). PostgreSQL only: DuckDB has no fill factor.
The setting applies to pages written from now on (nothing is rewritten: that would lock and
copy the tables). The posting ledgers get the fill factor of 70 a fresh database gave them
(`staging_models.ledger_tables`) and no revision did, and an index by window (a window's
closing counts and rejections scanned the whole ledger, every earlier window's lines
included). schema_meta version 13.
"""

from alembic import op

revision = "0013_pg_storage"
down_revision = "0012_revenue"
branch_labels = None
depends_on = None

#: The versions tables at this revision (frozen: a later dataset's table gets its fill factor
#: where it is created).
_TABLES = (
    "stg_employees",
    "stg_projects",
    "stg_project_tasks",
    "stg_rate_cards",
    "stg_time_entries",
    "stg_invoices",
    "stg_assignments",
    "stg_project_templates",
    "stg_crm_deals",
    "stg_milestones",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _TABLES:
            op.execute(f"ALTER TABLE {table} SET (fillfactor = 50)")
        for table, short in (("posting_ledger", "posting"), ("invoice_ledger", "invoice")):
            op.execute(f"ALTER TABLE {table} SET (fillfactor = 70)")
            op.execute(
                f"CREATE INDEX IF NOT EXISTS ix_{short}_ledger_window ON {table} (window_id)"
            )
    op.execute("UPDATE schema_meta SET value = '13' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore the backup taken before upgrading")
