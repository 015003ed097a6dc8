-- The staging PostgreSQL-only indexes of stagepost's first release (git 9736e9d), frozen: the Alembic base.
-- Generated once from that commit's SQLAlchemy metadata; never edit (add a revision).

CREATE INDEX ix_invoice_ledger_batch ON invoice_ledger (batch_id);

CREATE INDEX ix_posting_ledger_entry ON posting_ledger (entry_id);

CREATE INDEX ix_posting_ledger_batch ON posting_ledger (batch_id);
