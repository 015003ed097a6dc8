"""projects: the project's manager and their e-mail (optional master data)

The finance desk routes an exception on a project to its manager (routing rule kind
`project_manager`, issue 15), and the digest mails them at `manager_email` when no other
address is configured. Two nullable text columns on the landing and versions tables of
projects, appended (as a fresh database has them), and schema_meta version 7. Old rows keep
their content hash: the new columns enter it only when set.
"""

from alembic import op

revision = "0007_project_manager"
down_revision = "0006_posting_batches"
branch_labels = None
depends_on = None

_COLUMNS = ("project_manager", "manager_email")


def upgrade() -> None:
    for table in ("land_projects", "stg_projects"):
        for name in _COLUMNS:
            op.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} TEXT")
    op.execute("UPDATE schema_meta SET value = '7' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("no downgrade: restore the backup taken before upgrading")
