-- The erp PostgreSQL-only indexes of stagepost's first release (git 9736e9d), frozen: the Alembic base.
-- Generated once from that commit's SQLAlchemy metadata; never edit (add a revision).

CREATE INDEX ix_erp_invoices_issue_date ON erp_invoices (issue_date);

CREATE INDEX ix_erp_time_lines_reverses ON erp_time_lines (reverses_external_id) WHERE reverses_external_id IS NOT NULL;

CREATE INDEX ix_erp_time_lines_work_date ON erp_time_lines (work_date);
