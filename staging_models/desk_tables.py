"""The finance desk's tables: its users, the worklist it keeps of open exceptions, owners and
due dates, comments, and the audit trail of every action taken there.

The quarantine (`contract_tables.quarantine`) stays the one truth about which rows are open;
`desk_items` is a derived copy, one line per exception *group* (the versions of one key, or
keyless rows with the same values), rebuilt whenever the quarantine changes, so the worklist
pages with an indexed query instead of grouping 100,000 rows per request. Owners and due dates
(`desk_assignments`) outlive those rebuilds.
"""

from __future__ import annotations

import sqlalchemy as sa

from staging_models.tables import metadata

_ts = sa.DateTime(timezone=True)

desk_users = sa.Table(
    "desk_users",
    metadata,
    sa.Column("username", sa.Text, primary_key=True),
    sa.Column("password_hash", sa.Text),  # argon2id; NULL: signs in through the proxy header only
    sa.Column("role", sa.Text, nullable=False),  # controller | operations | admin
    sa.Column("email", sa.Text),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", _ts, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
)

desk_items = sa.Table(
    "desk_items",
    metadata,
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("group_key", sa.Text, nullable=False),  # row_key, or the raw values of a keyless row
    sa.Column("row_key", sa.Text, nullable=False),  # the latest row of the group
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("repeats", sa.Integer, nullable=False),  # quarantine rows in the group
    sa.Column("key_missing", sa.Boolean, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # open | ignored
    sa.Column("rule_codes", sa.Text, nullable=False),
    sa.Column("messages", sa.Text, nullable=False),
    sa.Column("raw_values", sa.Text),
    sa.Column("source_file", sa.Text),
    sa.Column("row_no", sa.Integer, nullable=False),
    sa.Column("legal_entity", sa.Text),
    sa.Column("project_code", sa.Text),
    sa.Column("first_seen", _ts, nullable=False),
    sa.Column("last_seen", _ts, nullable=False),
    sa.PrimaryKeyConstraint("dataset", "group_key"),
)
# The worklist's order (oldest first) and its keyset: a deep page is an index range scan.
# (PostgreSQL; DuckDB sorts 100,000 rows for a top-N faster than it maintains an index.)
sa.Index(
    "ix_desk_items_order", desk_items.c.first_seen, desk_items.c.dataset, desk_items.c.group_key
).ddl_if(dialect="postgresql")

desk_assignments = sa.Table(
    "desk_assignments",
    metadata,
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("group_key", sa.Text, nullable=False),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("due_date", sa.Date, nullable=False),
    sa.Column("routed", sa.Boolean, nullable=False),  # true: from the routing rules, untouched
    sa.Column("updated_by", sa.Text, nullable=False),
    sa.Column("updated_at", _ts, nullable=False),
    sa.PrimaryKeyConstraint("dataset", "group_key"),
)

desk_comments = sa.Table(
    "desk_comments",
    metadata,
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("group_key", sa.Text, nullable=False),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("written_at", _ts, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)

#: One row per action: who, when, what (action and its details as JSON), how many rows.
desk_audit = sa.Table(
    "desk_audit",
    metadata,
    sa.Column("audit_id", sa.Text, primary_key=True),
    sa.Column("acted_at", _ts, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    # login | assign | comment | ignore | reopen | revalidate | user_add
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("dataset", sa.Text),
    sa.Column("detail", sa.Text, nullable=False),  # JSON
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("run_id", sa.Text),  # the Dagster run it launched (re-validate)
)

#: The quarantine rows an action changed, so an undo reopens exactly those.
desk_audit_rows = sa.Table(
    "desk_audit_rows",
    metadata,
    sa.Column("audit_id", sa.Text, nullable=False),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("row_key", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("audit_id", "dataset", "row_key", "version"),
)

#: Small key/value state: the quarantine fingerprint `desk_items` was built from.
desk_state = sa.Table(
    "desk_state",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
