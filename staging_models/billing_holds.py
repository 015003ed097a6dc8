"""Billing holds: projects whose invoices posting windows hold, and the invoices held so.

A project carries a hold in its master data (`billing_hold`, `billing_hold_reason`,
`billing_hold_since` in the projects export). The plan holds its invoices
(`posting.plan._apply_billing_holds`) with a ledger message that starts with
`BILLING_HOLD_PREFIX`; the window's result, the reconciliation and the status feedback read
them back from here, so they agree on what is held, why and for how long.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import sqlalchemy as sa

from staging_models.db import StagingDB
from staging_models.ledger_tables import ledger_rows

#: Projects on a billing hold: their current version, whatever its state (a hold is a stop,
#: not master data to validate first).
HELD_PROJECTS = """
    SELECT row_key AS project_code, billing_hold_reason, billing_hold_since FROM stg_projects
    WHERE is_current AND billing_hold
"""

#: How a line held for a billing hold starts its ledger message.
BILLING_HOLD_PREFIX = "Billing hold on project "

#: Invoice ledger rows held for a billing hold, with the reason and since when each has
#: waited (the later of its issue date and the hold's since-date).
HELD_INVOICES = f"""
    SELECT l.invoice_id, l.external_id, l.kind, l.legal_entity, l.project_code, l.customer_id,
           l.currency, l.total_amount, l.issue_date, l.erp_message AS reason,
           p.billing_hold_since AS hold_since,
           CASE WHEN p.billing_hold_since > l.issue_date THEN p.billing_hold_since
                ELSE l.issue_date END AS held_since
    FROM {ledger_rows("invoice_ledger")} l
    LEFT JOIN stg_projects p ON p.row_key = l.project_code AND p.is_current
    WHERE l.state = 'held' AND l.erp_message LIKE '{BILLING_HOLD_PREFIX}%'
"""

COLUMNS = [
    "invoice_id",
    "external_id",
    "kind",
    "legal_entity",
    "project_code",
    "customer_id",
    "currency",
    "total_amount",
    "issue_date",
    "reason",
    "hold_since",
    "held_since",
    "age_days",
]


def held_invoices(db: StagingDB, today: date) -> pd.DataFrame:
    """Every invoice a billing hold keeps from the ERP now, oldest first, with `age_days`
    (days since `held_since`)."""
    frame = db.query_df(
        f"""SELECT h.*, CAST(:today AS DATE) - h.held_since AS age_days
            FROM ({HELD_INVOICES}) h ORDER BY h.held_since, h.invoice_id, h.external_id""",
        {"today": today},
    )
    if frame.empty:
        return pd.DataFrame(columns=COLUMNS)
    return frame[COLUMNS].astype({"age_days": "int64"})


def held_project_codes(conn: sa.Connection) -> list[str]:
    """Projects on a billing hold now."""
    return [r[0] for r in conn.exec_driver_sql(f"SELECT project_code FROM ({HELD_PROJECTS}) h")]
