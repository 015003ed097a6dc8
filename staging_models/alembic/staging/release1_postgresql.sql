-- The staging PostgreSQL-only indexes of stagepost's first release (git 9736e9d), frozen: the Alembic base.
-- Generated once from that commit's SQLAlchemy metadata; never edit (add a revision).

CREATE INDEX ix_invoice_ledger_batch ON invoice_ledger (batch_id);

CREATE INDEX ix_posting_ledger_entry ON posting_ledger (entry_id);

CREATE INDEX ix_posting_ledger_batch ON posting_ledger (batch_id);

-- after_create DDL of contract_tables._unique_on_postgresql
CREATE UNIQUE INDEX IF NOT EXISTS ux_validated_time_entries ON validated_time_entries (entry_id, version);

CREATE UNIQUE INDEX IF NOT EXISTS ux_validated_invoice_lines ON validated_invoice_lines (invoice_id, line_no, version);
