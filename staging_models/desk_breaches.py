"""Breaches: the desk's open exceptions past their due date, per legal entity.

Read by the desk's key figures (`desk/kpis.py`) and by the reconciliation workbook's summary
(`assets/reconciliation.py` passes them to `reconciliation/report.py`), so it sits below both:
the reconciliation never imports the desk. `desk_items` is rebuilt first when the quarantine
changed, so a workbook written before anyone opened the desk still counts every exception.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import sqlalchemy as sa

from staging_models import desk_items
from staging_models.db import StagingDB

COLUMNS = ["legal_entity", "open", "overdue"]


def breaches(db: StagingDB, today: date) -> pd.DataFrame:
    """Open exception groups and those past their due date (due before `today`), one row per
    legal entity (None where the row names none)."""
    desk_items.refresh(db)
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                """SELECT i.legal_entity, count(*) AS open,
                          sum(CASE WHEN a.due_date < :today THEN 1 ELSE 0 END) AS overdue
                   FROM desk_items i JOIN desk_assignments a
                     ON a.dataset = i.dataset AND a.group_key = i.group_key
                   WHERE i.status = 'open' GROUP BY i.legal_entity ORDER BY i.legal_entity"""
            ),
            {"today": today},
        ).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=COLUMNS)
    return frame.astype({"open": "int64", "overdue": "int64"})


def totals(frame: pd.DataFrame, legal_entity: str | None = None) -> tuple[int, int]:
    """(open, overdue) over every legal entity, or one."""
    if legal_entity is not None:
        frame = frame[frame["legal_entity"] == legal_entity]
    return int(frame["open"].sum()), int(frame["overdue"].sum())
