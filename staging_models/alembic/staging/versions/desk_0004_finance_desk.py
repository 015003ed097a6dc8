"""The finance desk (schema_meta version 4): users, worklist items, assignments, comments, audit trail

Tables only (nothing existing changes): `desk_users`, `desk_items`, `desk_assignments`,
`desk_comments`, `desk_audit`, `desk_audit_rows`, `desk_state`; on PostgreSQL the worklist's
order index. See `staging_models/desk_tables.py`.
"""

from alembic import op

revision = "0004_finance_desk"
down_revision = "0003_api_cursors"
branch_labels = None
depends_on = None

_TS = "TIMESTAMP WITH TIME ZONE"
_TABLES = (
    f"""CREATE TABLE IF NOT EXISTS desk_users (
    username TEXT NOT NULL,
    password_hash TEXT,
    role TEXT NOT NULL,
    email TEXT,
    active BOOLEAN NOT NULL,
    created_at {_TS} NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (username)
)""",
    f"""CREATE TABLE IF NOT EXISTS desk_items (
    dataset TEXT NOT NULL,
    group_key TEXT NOT NULL,
    row_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    repeats INTEGER NOT NULL,
    key_missing BOOLEAN NOT NULL,
    status TEXT NOT NULL,
    rule_codes TEXT NOT NULL,
    messages TEXT NOT NULL,
    raw_values TEXT,
    source_file TEXT,
    row_no INTEGER NOT NULL,
    legal_entity TEXT,
    project_code TEXT,
    first_seen {_TS} NOT NULL,
    last_seen {_TS} NOT NULL,
    PRIMARY KEY (dataset, group_key)
)""",
    f"""CREATE TABLE IF NOT EXISTS desk_assignments (
    dataset TEXT NOT NULL,
    group_key TEXT NOT NULL,
    owner TEXT NOT NULL,
    due_date DATE NOT NULL,
    routed BOOLEAN NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at {_TS} NOT NULL,
    PRIMARY KEY (dataset, group_key)
)""",
    f"""CREATE TABLE IF NOT EXISTS desk_comments (
    dataset TEXT NOT NULL,
    group_key TEXT NOT NULL,
    author TEXT NOT NULL,
    written_at {_TS} NOT NULL,
    body TEXT NOT NULL
)""",
    f"""CREATE TABLE IF NOT EXISTS desk_audit (
    audit_id TEXT NOT NULL,
    acted_at {_TS} NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    dataset TEXT,
    detail TEXT NOT NULL,
    row_count INTEGER NOT NULL,
    run_id TEXT,
    PRIMARY KEY (audit_id)
)""",
    """CREATE TABLE IF NOT EXISTS desk_audit_rows (
    audit_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    row_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (audit_id, dataset, row_key, version)
)""",
    """CREATE TABLE IF NOT EXISTS desk_state (
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (key)
)""",
)


def upgrade() -> None:
    for sql in _TABLES:
        op.execute(sql)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX IF NOT EXISTS ix_desk_items_order "
            "ON desk_items (first_seen, dataset, group_key)"
        )
    op.execute("UPDATE schema_meta SET value = '4' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore the backup taken before upgrading")
