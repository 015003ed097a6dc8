"""resource plans against actuals: the assignments dataset, plan vs actual, employees' capacity

Issue 21 (item 2). The PSA's resource plans land as the dataset `assignments` (tables
`land_assignments`, `stg_assignments`, like every dataset); each comparison with approved
time replaces `plan_actuals` (employee, project, ISO week: planned, actual, billable hours,
the outbound actuals file for the scheduling tool) and `plan_capacity` (employee, week:
capacity). Employees gain an optional `weekly_capacity_hours` (landing, its raw text, and
versions), appended as a fresh database has it; old rows keep their content hash (the column
enters it only when set). schema_meta version 9. See staging_models/resource_plan_tables.py.
"""

from alembic import op

revision = "0009_assignments"
down_revision = "0008_holds_feedback"
branch_labels = None
depends_on = None

_TS = "TIMESTAMP WITH TIME ZONE"
#: The dataset's columns, in the order of `connectors.sources.canonical.ASSIGNMENTS`.
_COLUMNS = f"""assignment_id TEXT,
    employee_id TEXT,
    project_code TEXT,
    task_code TEXT,
    role TEXT,
    week_start DATE,
    start_date DATE,
    end_date DATE,
    planned_hours NUMERIC(10, 4),
    bill_rate NUMERIC(14, 4),
    updated_at {_TS},
    deleted BOOLEAN"""
_TABLES = (
    f"""CREATE TABLE IF NOT EXISTS land_assignments (
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    row_key TEXT NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    {_COLUMNS},
    raw_week_start TEXT,
    raw_start_date TEXT,
    raw_end_date TEXT,
    raw_planned_hours TEXT,
    raw_bill_rate TEXT,
    raw_updated_at TEXT,
    raw_deleted TEXT,
    PRIMARY KEY (load_id, row_no)
)""",
    f"""CREATE TABLE IF NOT EXISTS stg_assignments (
    row_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    load_id TEXT NOT NULL,
    row_no INTEGER NOT NULL,
    key_missing BOOLEAN NOT NULL,
    content_hash TEXT NOT NULL,
    type_errors TEXT,
    {_COLUMNS},
    is_current BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    landed_at {_TS} NOT NULL,
    PRIMARY KEY (row_key, version)
)""",
    f"""CREATE TABLE IF NOT EXISTS plan_actuals (
    employee_id TEXT NOT NULL,
    project_code TEXT NOT NULL,
    week_start DATE NOT NULL,
    legal_entity TEXT,
    currency TEXT,
    planned_hours NUMERIC(12, 4) NOT NULL,
    actual_hours NUMERIC(12, 4) NOT NULL,
    billable_hours NUMERIC(12, 4) NOT NULL,
    variance_hours NUMERIC(12, 4) NOT NULL,
    planned_amount NUMERIC(18, 2),
    actual_amount NUMERIC(18, 2) NOT NULL,
    computed_at {_TS} NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (employee_id, project_code, week_start)
)""",
    f"""CREATE TABLE IF NOT EXISTS plan_capacity (
    employee_id TEXT NOT NULL,
    week_start DATE NOT NULL,
    legal_entity TEXT,
    capacity_hours NUMERIC(12, 4) NOT NULL,
    capacity_source TEXT NOT NULL,
    computed_at {_TS} NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (employee_id, week_start)
)""",
)


def upgrade() -> None:
    for sql in _TABLES:
        op.execute(sql)
    for table in ("land_employees", "stg_employees"):
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS weekly_capacity_hours NUMERIC(10, 4)"
        )
    op.execute("ALTER TABLE land_employees ADD COLUMN IF NOT EXISTS raw_weekly_capacity_hours TEXT")
    op.execute("UPDATE schema_meta SET value = '9' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore the backup taken before upgrading")
