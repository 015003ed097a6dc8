"""Revenue recognition per project and accounting period, set-based in the staging database.

`compute_revenue` rewrites `revenue_recognized` (see `revenue_tables`) from the current valid
data, in one INSERT ... SELECT: what each project has earned to the end of every period
from its first to the period of `as_of`, by its recognition method (docs/revenue.md):

- `time_and_materials`: the billable value of approved time (`validated_time_entries.amount`:
  the resolved rate x hours, rounded half up to the cent per entry);
- `fixed_fee`: contract value x percent complete, where percent complete is hours to date /
  budget hours (or, without budget hours, cost to date / budget cost: hours x the employee's
  cost rate, rounded to the cent per entry), capped at 100 % until the budget is raised;
  rounded half up to the cent per project and period, in exact integer arithmetic (DuckDB
  divides decimals as floats);
- `milestone`: the amounts of milestones accepted on or before the period's last day;
- `non_billable`: nothing (no rows).

Everything is recomputed from the data as it is now: a back-dated correction or a budget
change moves the figures of past periods here; the journal plan (`posting.revenue`) turns
what differs from what a closed period already holds into an adjustment in an open period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import sqlalchemy as sa

from connectors.erp.periods import month_end
from staging_models.db import StagingDB

#: Percent complete is stored with 4 decimals (0.0000-100.0000), rounded half up.
PERCENT_SCALE = 4


def div_half_up_sql(db: StagingDB, num: str, den: str) -> str:
    """round(num / den) half up, for whole numbers num >= 0 and den > 0, exactly: on 128-bit
    integers in DuckDB (whose decimal division is a float), on numerics in PostgreSQL."""
    if db.is_duckdb:
        return f"((CAST({num} AS HUGEINT) * 2 + ({den})) // (CAST({den} AS HUGEINT) * 2))"
    return f"div(CAST({num} AS NUMERIC) * 2 + ({den}), CAST({den} AS NUMERIC) * 2)"


def periods_between(first: date, last: date) -> list[str]:
    """'YYYY-MM' of every month from `first`'s to `last`'s."""
    out, y, m = [], first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _period(db: StagingDB, col: str) -> str:
    return f"strftime({col}, '%Y-%m')" if db.is_duckdb else f"to_char({col}, 'YYYY-MM')"


@dataclass(frozen=True)
class RevenueResult:
    rows: int  # project-period rows written
    projects: int
    first_period: str | None
    last_period: str


def _revenue_sql(db: StagingDB, calendar: str) -> str:
    te_period = _period(db, "v.work_date")
    ms_period = _period(db, "m.accepted_on")
    inv_period = _period(db, "v.issue_date")
    start_period = _period(db, "p.start_date")
    hours_units = "CAST(g.hours_cum * 10000 AS BIGINT)"  # 4 decimals -> whole
    budget_h_units = "CAST(g.budget_hours * 10000 AS BIGINT)"
    cost_units = "CAST(g.cost_cum * 100 AS BIGINT)"  # cents
    budget_c_units = "CAST(g.budget_cost * 100 AS BIGINT)"
    cv_cents = "CAST(g.contract_value * 100 AS BIGINT)"
    by_hours = "g.budget_hours IS NOT NULL"
    basis = f"CASE WHEN {by_hours} THEN {hours_units} ELSE {cost_units} END"
    budget = f"CASE WHEN {by_hours} THEN {budget_h_units} ELSE {budget_c_units} END"
    fixed_cents = div_half_up_sql(db, f"{cv_cents} * {basis}", budget)
    pct_units = div_half_up_sql(db, f"{basis} * 1000000", budget)
    return f"""
        WITH cal AS ({calendar}),
        prj AS (
            SELECT p.row_key AS project_code, p.legal_entity, p.currency,
                   coalesce(p.recognition_method, p.billing_method) AS method,
                   p.contract_value, p.budget_hours, p.budget_cost,
                   greatest(coalesce({start_period}, (SELECT MIN(period) FROM cal)),
                            (SELECT MIN(period) FROM cal)) AS first_period
            FROM stg_projects p
            WHERE p.is_current AND p.state = 'valid'
              AND coalesce(p.recognition_method, p.billing_method) IN
                  ('time_and_materials', 'fixed_fee', 'milestone')
              -- a fixed fee billed without contract value or budget: not recognized here
              AND (coalesce(p.recognition_method, p.billing_method) <> 'fixed_fee'
                   OR (p.contract_value IS NOT NULL
                       AND (p.budget_hours IS NOT NULL OR p.budget_cost IS NOT NULL)))
        ),
        te AS (  -- current valid versions of approved time, per project and month
            SELECT v.project_code, {te_period} AS period, SUM(v.hours) AS hours,
                   SUM(v.amount) AS amount,
                   SUM(ROUND(v.hours * coalesce(e.cost_rate, 0), 2)) AS cost
            FROM validated_time_entries v
            JOIN stg_time_entries s ON s.is_current AND s.state = 'valid'
                 AND s.row_key = v.entry_id AND s.version = v.version
            LEFT JOIN stg_employees e ON e.is_current AND e.row_key = v.employee_id
            GROUP BY v.project_code, {te_period}
        ),
        ms AS (
            SELECT m.project_code, {ms_period} AS period, SUM(m.amount) AS amount
            FROM stg_milestones m
            WHERE m.is_current AND m.state = 'valid' AND m.accepted_on IS NOT NULL
            GROUP BY m.project_code, {ms_period}
        ),
        inv AS (  -- released invoice lines, current valid versions
            SELECT v.project_code, {inv_period} AS period, SUM(v.amount) AS amount
            FROM validated_invoice_lines v
            JOIN stg_invoices s ON s.is_current AND s.state = 'valid'
                 AND s.invoice_id = v.invoice_id AND s.line_no = v.line_no
                 AND s.version = v.version
            WHERE v.status = 'released'
            GROUP BY v.project_code, {inv_period}
        ),
        facts AS (
            SELECT project_code, period, hours, amount, cost, 0 AS ms, 0 AS inv FROM te
            UNION ALL SELECT project_code, period, 0, 0, 0, amount, 0 FROM ms
            UNION ALL SELECT project_code, period, 0, 0, 0, 0, amount FROM inv
        ),
        -- To the end of each period: every fact of that month or before (a fact before the
        -- first period counts in the first). Facts are per project and month: a small join.
        grid AS (
            SELECT p.project_code, p.legal_entity, p.currency, p.method, p.contract_value,
                   p.budget_hours, p.budget_cost, c.period,
                   coalesce(SUM(f.hours), 0) AS hours_cum,
                   coalesce(SUM(f.amount), 0) AS amount_cum,
                   coalesce(SUM(f.cost), 0) AS cost_cum,
                   coalesce(SUM(f.ms), 0) AS ms_cum,
                   coalesce(SUM(f.inv), 0) AS inv_cum
            FROM prj p
            JOIN cal c ON c.period >= p.first_period
            LEFT JOIN facts f ON f.project_code = p.project_code AND f.period <= c.period
            GROUP BY p.project_code, p.legal_entity, p.currency, p.method, p.contract_value,
                     p.budget_hours, p.budget_cost, c.period
        ),
        rec AS (
            SELECT g.project_code, g.period, g.legal_entity, g.currency, g.method,
                   CASE WHEN g.method = 'fixed_fee' THEN
                        CASE WHEN {by_hours} THEN g.hours_cum ELSE g.cost_cum END END
                       AS progress_to_date,
                   CASE WHEN g.method = 'fixed_fee' THEN
                        coalesce(g.budget_hours, g.budget_cost) END AS budget,
                   CASE WHEN g.method = 'fixed_fee' THEN
                        CAST(least({pct_units}, 1000000) AS DECIMAL(18, 0))
                        * CAST(0.0001 AS DECIMAL(5, 4)) END AS percent_complete,
                   CAST(CASE g.method
                        WHEN 'time_and_materials' THEN g.amount_cum
                        WHEN 'milestone' THEN g.ms_cum
                        ELSE CAST(least({fixed_cents}, {cv_cents}) AS DECIMAL(18, 0))
                             * CAST(0.01 AS DECIMAL(3, 2))
                   END AS DECIMAL(18, 2)) AS recognized_to_date,
                   g.inv_cum AS invoiced_to_date
            FROM grid g
        )
        SELECT project_code, period, legal_entity, currency, method, progress_to_date, budget,
               percent_complete, recognized_to_date,
               CAST(recognized_to_date - coalesce(LAG(recognized_to_date) OVER (
                   PARTITION BY project_code ORDER BY period), 0) AS DECIMAL(18, 2))
                   AS period_amount,
               CAST(invoiced_to_date AS DECIMAL(18, 2)) AS invoiced_to_date,
               CAST(recognized_to_date - invoiced_to_date AS DECIMAL(18, 2)) AS wip,
               CAST(:now AS TIMESTAMP WITH TIME ZONE) AS computed_at
        FROM rec
    """


def compute_revenue(
    db: StagingDB, as_of: date, *, now: datetime | None = None, first: date | None = None
) -> RevenueResult:
    """Rewrite `revenue_recognized` for every period from the earliest project start (or
    `first`) to `as_of`'s month, in one transaction."""
    now = now or datetime.now(UTC)
    if first is None:
        lo = db.scalar(
            """SELECT MIN(d) FROM (
                   SELECT MIN(start_date) AS d FROM stg_projects WHERE is_current
                   UNION ALL SELECT MIN(work_date) FROM validated_time_entries
                   UNION ALL SELECT MIN(accepted_on) FROM stg_milestones WHERE is_current) x"""
        )
        first = lo if lo is not None else as_of
        if isinstance(first, datetime):
            first = first.date()
    periods = periods_between(min(first, as_of), as_of)
    calendar = " UNION ALL ".join(
        f"SELECT '{p}' AS period, CAST('{month_end(date.fromisoformat(p + '-01'))}' AS DATE) "
        "AS period_end"
        for p in periods
    )
    cols = (
        "project_code, period, legal_entity, currency, method, progress_to_date, budget, "
        "percent_complete, recognized_to_date, period_amount, invoiced_to_date, wip, computed_at"
    )
    with db.begin() as conn:
        conn.exec_driver_sql("DELETE FROM revenue_recognized")
        conn.execute(
            sa.text(f"INSERT INTO revenue_recognized ({cols}) {_revenue_sql(db, calendar)}"),
            {"now": now},
        )
        rows, projects = conn.execute(
            sa.text("SELECT COUNT(*), COUNT(DISTINCT project_code) FROM revenue_recognized")
        ).one()
    return RevenueResult(int(rows), int(projects), periods[0], periods[-1])
