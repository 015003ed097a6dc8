"""revenue recognition (issue 17): project budgets, milestones, recognized revenue, journals

Projects gain `recognition_method`, `contract_value`, `budget_hours` and `budget_cost`
(nullable, appended on the landing and versions tables as a fresh database has them; old
rows keep their content hash, the columns enter it only when set). New tables: the
`milestones` dataset's landing and versions tables, `revenue_recognized` (per project and
period, `staging_models/revenue_tables.py`) and the journal ledger (`journal_ledger`,
`journal_ledger_lines`, `staging_models/ledger_tables.py`). schema_meta version 12.
"""

from alembic import op

revision = "0012_revenue"
down_revision = "0011_expenses"
branch_labels = None
depends_on = None

_TS = "TIMESTAMP WITH TIME ZONE"
_PROJECT_COLUMNS = (
    ("recognition_method", "TEXT"),
    ("contract_value", "NUMERIC(18, 2)"),
    ("budget_hours", "NUMERIC(10, 4)"),
    ("budget_cost", "NUMERIC(18, 2)"),
)
#: Non-text columns keep their raw text on the landing table too (`raw_<name>`).
_RAW = ("contract_value", "budget_hours", "budget_cost")
_TABLES = (
    f"""CREATE TABLE IF NOT EXISTS land_milestones (
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    row_key TEXT NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    project_code TEXT,
    milestone_id TEXT,
    description TEXT,
    amount NUMERIC(18, 2),
    accepted_on DATE,
    updated_at {_TS},
    raw_amount TEXT,
    raw_accepted_on TEXT,
    raw_updated_at TEXT,
    PRIMARY KEY (load_id, row_no)
)""",
    f"""CREATE TABLE IF NOT EXISTS stg_milestones (
    row_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    project_code TEXT,
    milestone_id TEXT,
    description TEXT,
    amount NUMERIC(18, 2),
    accepted_on DATE,
    updated_at {_TS},
    is_current BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    landed_at {_TS} NOT NULL,
    PRIMARY KEY (row_key, version)
)""",
    f"""CREATE TABLE IF NOT EXISTS revenue_recognized (
    project_code TEXT NOT NULL,
    period TEXT NOT NULL,
    legal_entity TEXT NOT NULL,
    currency TEXT NOT NULL,
    method TEXT NOT NULL,
    progress_to_date NUMERIC(18, 4),
    budget NUMERIC(18, 4),
    percent_complete NUMERIC(9, 4),
    recognized_to_date NUMERIC(18, 2) NOT NULL,
    period_amount NUMERIC(18, 2) NOT NULL,
    invoiced_to_date NUMERIC(18, 2) NOT NULL,
    wip NUMERIC(18, 2) NOT NULL,
    computed_at {_TS} NOT NULL,
    PRIMARY KEY (project_code, period)
)""",
    f"""CREATE TABLE IF NOT EXISTS journal_ledger (
    external_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    journal_id TEXT NOT NULL,
    journal_version INTEGER NOT NULL,
    reverses_external_id TEXT,
    journal_type TEXT NOT NULL,
    legal_entity TEXT NOT NULL,
    currency TEXT NOT NULL,
    journal_date DATE NOT NULL,
    period TEXT NOT NULL,
    total_debit NUMERIC(18, 2) NOT NULL,
    line_count INTEGER NOT NULL,
    state TEXT NOT NULL,
    erp_message TEXT,
    batch_id TEXT,
    window_id TEXT NOT NULL,
    run_id TEXT,
    launched_by TEXT,
    planned_at {_TS} NOT NULL,
    sent_at {_TS},
    settled_at {_TS},
    PRIMARY KEY (external_id)
)""",
    """CREATE TABLE IF NOT EXISTS journal_ledger_lines (
    journal_external_id TEXT NOT NULL,
    line_no INTEGER NOT NULL,
    account_code TEXT NOT NULL,
    project_code TEXT NOT NULL,
    line_role TEXT NOT NULL,
    debit NUMERIC(18, 2) NOT NULL,
    credit NUMERIC(18, 2) NOT NULL,
    description TEXT,
    PRIMARY KEY (journal_external_id, line_no)
)""",
)


def upgrade() -> None:
    for table in ("land_projects", "stg_projects"):
        for name, sql_type in _PROJECT_COLUMNS:
            op.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {sql_type}")
    for name in _RAW:
        op.execute(f"ALTER TABLE land_projects ADD COLUMN IF NOT EXISTS raw_{name} TEXT")
    for ddl in _TABLES:
        op.execute(ddl)
    op.execute("UPDATE schema_meta SET value = '12' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore the backup taken before upgrading")
