"""vendor exports: time entries carry the approval policy's source, the exact duration, the
PSA's own amount and a fixed-price amount

Real exports (Harvest, Toggl, Clockify, Kimai, solidtime; issue 14) have no approval time
(a mapping's approval policy infers one and says where from: `approved_at_source`), give
durations in seconds that rounding hours to 4 places loses a cent on (`duration_seconds`),
carry their own amounts (`source_amount`, checked against rate x hours) and fixed-price
entries (`fixed_amount`). Four nullable columns on the landing and versions tables of time
entries, appended (as a fresh database has them), and schema_meta version 5. Old rows keep
their content hash: the new columns enter it only when set.
"""

from alembic import op

revision = "0005_vendor_columns"
down_revision = "0004_finance_desk"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("approved_at_source", "TEXT"),
    ("duration_seconds", "INTEGER"),
    ("source_amount", "NUMERIC(18, 2)"),
    ("fixed_amount", "NUMERIC(18, 2)"),
)
#: Non-text columns keep their raw text on the landing table too (`raw_<name>`).
_RAW = ("duration_seconds", "source_amount", "fixed_amount")


def upgrade() -> None:
    for table in ("land_time_entries", "stg_time_entries"):
        for name, sql_type in _COLUMNS:
            op.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {sql_type}")
    for name in _RAW:
        op.execute(f"ALTER TABLE land_time_entries ADD COLUMN IF NOT EXISTS raw_{name} TEXT")
    op.execute("UPDATE schema_meta SET value = '5' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore the backup taken before upgrading")
