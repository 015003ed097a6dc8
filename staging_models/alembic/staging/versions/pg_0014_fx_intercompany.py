"""exchange rates and intercompany time (issue 21 item 3)

The `fx_rates` dataset's landing and versions tables (the versions table with the fill factor
of 50 every `stg_*` table has on PostgreSQL, `staging_models.tables.VERSIONS_FILLFACTOR`), and
the intercompany columns of `validated_time_entries` (nullable, appended: existing rows are
entries of one legal entity and keep NULL). See docs/intercompany.md. schema_meta version 14.
"""

from alembic import op

revision = "0014_fx_intercompany"
down_revision = "0013_pg_storage"
branch_labels = None
depends_on = None

_TS = "TIMESTAMP WITH TIME ZONE"
_TABLES = (
    f"""CREATE TABLE IF NOT EXISTS land_fx_rates (
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    row_key TEXT NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    rate_date DATE,
    from_currency TEXT,
    to_currency TEXT,
    rate NUMERIC(18, 8),
    source TEXT,
    updated_at {_TS},
    raw_rate_date TEXT,
    raw_rate TEXT,
    raw_updated_at TEXT,
    PRIMARY KEY (load_id, row_no)
)""",
    f"""CREATE TABLE IF NOT EXISTS stg_fx_rates (
    row_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    rate_date DATE,
    from_currency TEXT,
    to_currency TEXT,
    rate NUMERIC(18, 8),
    source TEXT,
    updated_at {_TS},
    is_current BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    landed_at {_TS} NOT NULL,
    PRIMARY KEY (row_key, version)
)""",
)
_ENTRY_COLUMNS = (
    ("ic_legal_entity", "TEXT"),
    ("ic_transfer_rate", "NUMERIC(14, 4)"),
    ("ic_rec_currency", "TEXT"),
    ("ic_rec_amount", "NUMERIC(18, 2)"),
    ("ic_pay_currency", "TEXT"),
    ("ic_pay_amount", "NUMERIC(18, 2)"),
    ("ic_fx_rate", "NUMERIC(18, 8)"),
    ("ic_fx_rate_date", "DATE"),
    ("ic_fx_inverse", "BOOLEAN"),
    ("ic_fx_source", "TEXT"),
)


def upgrade() -> None:
    for ddl in _TABLES:
        op.execute(ddl)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE stg_fx_rates SET (fillfactor = 50)")
    for name, sql_type in _ENTRY_COLUMNS:
        op.execute(f"ALTER TABLE validated_time_entries ADD COLUMN IF NOT EXISTS {name} {sql_type}")
    op.execute("UPDATE schema_meta SET value = '14' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore the backup taken before upgrading")
