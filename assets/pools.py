"""Dagster concurrency pools the assets join.

With `granularity: run` (see `dagster_home/dagster.yaml`) the run queue starts a run only when
every pool its assets use has room: two ingestion runs never write staging at once, two
reconciliations never rewrite the rec_* tables at once, while an ingestion and a reconciliation
may run side by side on PostgreSQL staging. With the embedded DuckDB file the instance allows one
run at all (one writer process), so the pools change nothing there.
"""

from __future__ import annotations

#: Landing, validation and operator actions on the quarantine: they write the staging tables.
STAGING_WRITE = "stagepost_staging_write"
#: Posting windows. Its limit is how many windows may run at once (default 1); the run queue also
#: keeps one window per legal entity (tag `stagepost/legal_entity`), and the posting lock in
#: staging guards across instances too. On PostgreSQL staging, raise it to post entities in
#: parallel: `dagster instance concurrency set stagepost_erp_posting 4`.
ERP_POSTING = "stagepost_erp_posting"
#: The reconciliation assets and their workbook.
RECONCILIATION = "stagepost_reconciliation"
