"""Key figures for the desk's KPI page, per currency and never summed across currencies:

- approved, not posted: current valid time entries with no confirmed posting of that version,
  by days since approval (0-1, 2-7, 8-30, over 30), entries, hours and amount per currency;
- straight-through rate per week: approved time-entry versions landed that week that were never
  quarantined, over all of them;
- open exceptions by rule code, and by owner with how many are overdue (breaches);
- open exceptions and breaches in all (`staging_models/desk_breaches.py`, which the
  reconciliation workbook's summary counts too).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from staging_models import desk_breaches
from staging_models.db import StagingDB
from staging_models.ledger_tables import ledger_rows

AGING = ("0-1", "2-7", "8-30", "over 30", "unknown")


def _rows(conn, sql: str, **params: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]


def unposted_aging(conn, today: date) -> list[dict[str, Any]]:
    return _rows(
        conn,
        f"""WITH u AS (
             SELECT v.currency, v.hours, v.amount,
                    CAST(:today AS DATE) - CAST(v.approved_at AS DATE) AS age
             FROM validated_time_entries v
             JOIN stg_time_entries s ON s.row_key = v.entry_id AND s.version = v.version
              AND s.is_current AND s.state = 'valid'
             WHERE NOT EXISTS (
                 SELECT 1 FROM {ledger_rows("posting_ledger")} l WHERE l.entry_id = v.entry_id
                   AND l.entry_version = v.version AND l.kind = 'post' AND l.state = 'confirmed'))
           SELECT currency,
                  CASE WHEN age IS NULL THEN 'unknown' WHEN age <= 1 THEN '0-1'
                       WHEN age <= 7 THEN '2-7' WHEN age <= 30 THEN '8-30' ELSE 'over 30' END
                    AS bucket,
                  count(*) AS entries, sum(hours) AS hours, sum(amount) AS amount
           FROM u GROUP BY 1, 2 ORDER BY 1, 2""",
        today=today,
    )


def straight_through(conn, since: datetime) -> list[dict[str, Any]]:
    rows = _rows(
        conn,
        """SELECT CAST(date_trunc('week', s.landed_at) AS DATE) AS week, count(*) AS versions,
                  sum(CASE WHEN q.row_key IS NULL THEN 1 ELSE 0 END) AS straight
           FROM stg_time_entries s
           LEFT JOIN (SELECT DISTINCT row_key, version FROM quarantine
                      WHERE dataset = 'time_entries') q
             ON q.row_key = s.row_key AND q.version = s.version
           WHERE s.state <> 'not_postable' AND s.landed_at >= :since
           GROUP BY 1 ORDER BY 1""",
        since=since,
    )
    for r in rows:
        r["rate"] = (
            (Decimal(int(r["straight"])) / Decimal(int(r["versions"]))).quantize(Decimal("0.001"))
            if r["versions"]
            else None
        )
    return rows


def by_rule(db: StagingDB, conn) -> list[dict[str, Any]]:
    split = db.split_list_sql("rule_codes", ",")
    return _rows(
        conn,
        f"""SELECT code, count(*) AS open FROM (
              SELECT {split} AS code FROM desk_items WHERE status = 'open') t
            GROUP BY code ORDER BY count(*) DESC, code""",
    )


def by_owner(conn, today: date) -> list[dict[str, Any]]:
    return _rows(
        conn,
        """SELECT a.owner, count(*) AS open,
                  sum(CASE WHEN a.due_date < :today THEN 1 ELSE 0 END) AS overdue
           FROM desk_items i JOIN desk_assignments a
             ON a.dataset = i.dataset AND a.group_key = i.group_key
           WHERE i.status = 'open' GROUP BY a.owner ORDER BY a.owner""",
        today=today,
    )


def figures(db: StagingDB, today: date | None = None, weeks: int = 12) -> dict[str, Any]:
    today = today or datetime.now(UTC).date()
    open_, overdue = desk_breaches.totals(desk_breaches.breaches(db, today))
    since = datetime.combine(today - timedelta(weeks=weeks), datetime.min.time(), tzinfo=UTC)
    with db.engine.connect() as conn:
        aging = unposted_aging(conn, today)
        out = {
            "aging": aging,
            "currencies": sorted({r["currency"] for r in aging}),
            "straight": straight_through(conn, since),
            "rules": by_rule(db, conn),
            "owners": by_owner(conn, today),
            "today": today,
            "open": open_,
            "overdue": overdue,
        }
    return out
