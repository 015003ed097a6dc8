"""Running the contracts in the staging database and keeping every row accounted for.

Per dataset, in one transaction:
1. versions that are no longer current become `superseded` (their open quarantine closes);
2. current time entries and expenses that are not approved, or are deletions, become
   `not_postable` (so do deleted assignments);
3. every current version still `pending` or `quarantined` (and not ignored by an operator) is
   joined with the master data it refers to (the *candidate* table) and checked against all
   rules of `staging_models.contracts` at once, set-based;
4. rows that break rules are (re)quarantined with every rule and message; rows that pass become
   `valid` (a quarantined row that now passes is *released*, with an audit event) and are copied,
   with their resolved rate and amount, into `validated_*`.
Master data is validated before the time entries and invoices that refer to it.

Steps 3-4 run in parts of at most `BATCH_ROWS` candidates (`BATCH_ROWS_POSTGRES` on
PostgreSQL; by row number), each part in its own transaction. Every rule looks at one candidate row and the staging tables, never at the
other candidates, so the parts judge exactly as one pass would; but memory stays bounded, and
a part that committed stays done. Before, 3M landed rows made every validation run out of
memory (1 GB DuckDB limit) and roll back whole, so it kept failing after the file was gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from connectors.sources.canonical import DATASETS, DEAL_WON, Dataset
from connectors.sql import read_frame
from staging_models import fx
from staging_models.contracts import MAX_RANGE_DAYS, RULES
from staging_models.db import SCRATCH_STATISTICS_TARGET, StagingDB

#: Candidates per transaction: 3M all-quarantined time entries ran out of a 1 GB DuckDB limit
#: in one pass.
BATCH_ROWS = 250_000
#: The same on PostgreSQL, which works within `work_mem` and spills to disk instead of running
#: out of memory: parts only repeat what every part computes over the whole dataset (the
#: duplicate keys of the loads, the daily hours per employee). 1M entries in parts of 250,000
#: took 34 s for the four candidate statements, 10 s in one.
BATCH_ROWS_POSTGRES = 2_000_000
#: One part of the candidates: (index, count); rows whose row number modulo count is index.
Part = tuple[int, int]

ORDER = (
    "employees",
    "projects",
    "project_tasks",
    "rate_cards",
    "milestones",
    "fx_rates",
    "time_entries",
    "invoices",
    "expenses",
    "assignments",
    "project_templates",
    "crm_deals",
)
VALIDATED = {
    "time_entries": "validated_time_entries",
    "invoices": "validated_invoice_lines",
    "expenses": "validated_expenses",
}
#: Datasets of documents a PSA approves or deletes: a current version that is not approved, or
#: is a deletion, is `not_postable` (the others are master data and invoice proposals).
APPROVED_DATASETS = ("time_entries", "expenses")
#: What validation analyzes of the tables it writes (PostgreSQL, see `StagingDB.analyze`): the
#: columns later statements join and filter on.
_ANALYZED = {
    "quarantine": "quarantine (dataset, row_key, version, status)",
    "quarantine_violations": "quarantine_violations (dataset, row_key, version, rule_code)",
    "validated_time_entries": (
        "validated_time_entries (entry_id, version, legal_entity, project_code, work_date)"
    ),
    "validated_invoice_lines": (
        "validated_invoice_lines (invoice_id, line_no, version, legal_entity, issue_date)"
    ),
    "validated_expenses": (
        "validated_expenses (expense_id, version, legal_entity, project_code, expense_date)"
    ),
}
#: PostgreSQL's work_mem for a validation part (at most `BATCH_ROWS` candidates).
CANDIDATE_WORK_MEM = "128MB"
STATES = ("valid", "quarantined", "superseded", "not_postable")


@dataclass
class DatasetValidation:
    dataset: str
    checked: int = 0
    valid: int = 0
    quarantined: int = 0
    released: int = 0
    newly_quarantined: int = 0
    superseded: int = 0
    not_postable: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)


def _raw_cols(ds: Dataset) -> list[str]:
    return [f"raw_{c.name}" for c in ds.columns if c.type != "text"]


def _scope_sql(ds: Dataset, part: Part = (0, 1)) -> str:
    i, n = part
    in_part = f"AND s.row_no % {int(n)} = {int(i)}" if n > 1 else ""
    return f"""
        SELECT s.*, {", ".join(f"l.{c}" for c in _raw_cols(ds)) or "NULL AS _no_raw"}
        FROM {ds.versions_table} s
        JOIN {ds.landing_table} l ON l.load_id = s.load_id AND l.row_no = s.row_no
        WHERE s.is_current AND s.state IN ('pending', 'quarantined')
          AND NOT EXISTS (
              SELECT 1 FROM quarantine q
              WHERE q.dataset = '{ds.name}' AND q.row_key = s.row_key
                AND q.version = s.version AND q.status = 'ignored')
          {in_part}
    """


def _dup_sql(ds: Dataset, part: Part = (0, 1)) -> str:
    """Keys that appear in one load with different content (a PSA export contradicting itself).

    MIN <> MAX, not COUNT(DISTINCT) > 1 (the same keys: content_hash is never NULL): PostgreSQL
    sorts every landed row for a distinct count but hashes a MIN/MAX (51,000 rows: 0.33 s ->
    0.13 s).

    In a part of several (DuckDB, `BATCH_ROWS`), only the keys of the part's own candidates
    are grouped: the result is only ever joined with them, and grouping every landed row in
    every part was most of the candidate statement (1M entries in 4 parts: 2.3 s of 3.1 s of
    CPU per part)."""
    if part[1] > 1:
        in_scope = """EXISTS (SELECT 1 FROM scope s
                              WHERE s.load_id = l.load_id AND s.row_key = l.row_key)"""
    else:
        in_scope = "l.load_id IN (SELECT load_id FROM scope)"
    return f"""
        SELECT l.load_id, l.row_key FROM {ds.landing_table} l
        WHERE NOT l.key_missing AND {in_scope}
        GROUP BY l.load_id, l.row_key HAVING MIN(l.content_hash) <> MAX(l.content_hash)
    """


@dataclass(frozen=True)
class Candidate:
    """The candidate row `x` of one dataset, as its rules see it: the scope row `s` (the
    version and its raw texts) and `dup_conflict`, plus what the rules need from elsewhere.

    Rendered as `WITH scope, dup, <ctes> SELECT s.*, dup_conflict, <columns> FROM scope s
    <dup join> <joins>`; with `then`, that SELECT becomes the CTE `base` and `then` follows it.
    """

    #: CTEs the joins read, after `scope` and `dup` (name -> SELECT). `{split_entry_ids}` is
    #: the dialect's SQL turning `s.entry_ids` into rows.
    ctes: Mapping[str, str] = field(default_factory=dict)
    #: Columns after `s.*, dup_conflict`.
    columns: tuple[str, ...] = ()
    #: Joins after the `dup` join.
    joins: tuple[str, ...] = ()
    #: CTEs over the joined row `base`, then the final SELECT, for a column that needs the
    #: joined row itself (the rate card is chosen by the employee's role).
    then: Mapping[str, str] = field(default_factory=dict)
    final: str = ""


_PROJECT = "LEFT JOIN stg_projects p ON p.is_current AND p.row_key = s.project_code"
_PROJECT_FOUND = "p.row_key IS NOT NULL AS prj_found"

#: Dataset -> its candidate row. Each rule of `staging_models.contracts` reads these columns.
CANDIDATES: dict[str, Candidate] = {
    "employees": Candidate(),
    "projects": Candidate(),
    "project_tasks": Candidate(columns=(_PROJECT_FOUND,), joins=(_PROJECT,)),
    "rate_cards": Candidate(
        ctes={
            # Other current rate cards (not ignored) that may overlap the candidate's validity.
            "live": """
                SELECT r.* FROM stg_rate_cards r
                WHERE r.is_current AND NOT r.key_missing AND NOT EXISTS (
                    SELECT 1 FROM quarantine q WHERE q.dataset = 'rate_cards'
                      AND q.row_key = r.row_key AND q.version = r.version AND q.status = 'ignored')
            """,
            "overlap": """
                SELECT DISTINCT a.row_key FROM scope a JOIN live b
                  ON b.project_code = a.project_code AND b.row_key <> a.row_key
                 AND coalesce(b.employee_id, '') = coalesce(a.employee_id, '')
                 AND coalesce(b.role, '') = coalesce(a.role, '')
                 AND a.valid_from <= coalesce(b.valid_to, DATE '9999-12-31')
                 AND b.valid_from <= coalesce(a.valid_to, DATE '9999-12-31')
            """,
        },
        columns=(
            _PROJECT_FOUND,
            "p.currency AS prj_currency",
            "o.row_key IS NOT NULL AS overlaps",
        ),
        joins=(_PROJECT, "LEFT JOIN overlap o ON o.row_key = s.row_key"),
    ),
    "milestones": Candidate(
        columns=(
            _PROJECT_FOUND,
            "coalesce(p.recognition_method, p.billing_method) AS prj_method",
            "p.start_date AS prj_start",
        ),
        joins=(_PROJECT,),
    ),
    "time_entries": Candidate(
        ctes={
            # Approved hours per employee and day, for the daily maximum. `{day_scope}`: of the
            # candidates' employees; in a part of several, of their own days only (see
            # `_day_scope_sql`).
            "day": """
                SELECT employee_id, work_date, SUM(hours) AS day_hours FROM stg_time_entries
                WHERE is_current AND approval_status = 'approved' AND NOT deleted
                  AND hours > 0 AND hours <= 24
                  AND {day_scope}
                GROUP BY employee_id, work_date
            """,
        },
        columns=(
            "e.row_key IS NOT NULL AS emp_found",
            "e.legal_entity AS emp_legal_entity",
            "e.role AS emp_role",
            _PROJECT_FOUND,
            "p.state AS prj_state",
            "p.status AS prj_status",
            "p.start_date AS prj_start",
            "p.end_date AS prj_end",
            "p.legal_entity AS prj_legal_entity",
            "p.currency AS prj_currency",
            "p.billing_method AS prj_billing",
            "p.customer_id AS prj_customer",
            "t.row_key IS NOT NULL AS task_found",
            "t.billable AS task_billable",
            "d.day_hours",
            "CAST(:latest_today AS DATE) AS latest_today",
            # A flag, not two IS NULL tests in `rc`: PostgreSQL has no statistics for a CTE
            # and puts those at ~1 row (a boolean at half), then nests a loop over the rate
            # cards for every entry without a rate.
            "(s.bill_rate IS NULL AND s.raw_bill_rate IS NULL) AS needs_rate",
            # Intercompany (docs/intercompany.md): `{ic_policy}` is the policy's flag;
            # the employee's currency and cost rate give the transfer price.
            "e.currency AS emp_currency",
            "e.cost_rate AS emp_cost_rate",
            "{ic_policy} AS ic_policy",
        ),
        joins=(
            "LEFT JOIN stg_employees e ON e.is_current AND e.row_key = s.employee_id",
            _PROJECT,
            """LEFT JOIN stg_project_tasks t ON t.is_current AND t.state = 'valid'
                     AND t.project_code = s.project_code AND t.task_code = s.task_code""",
            "LEFT JOIN day d ON d.employee_id = s.employee_id AND d.work_date = s.work_date",
        ),
        then={
            # The most specific rate card valid on the work date: employee, then role, then
            # default (only for entries that carry no rate of their own).
            "rc": """
                SELECT b.row_key, b.version, r.bill_rate,
                       ROW_NUMBER() OVER (
                           PARTITION BY b.row_key, b.version
                           ORDER BY CASE WHEN r.employee_id IS NOT NULL THEN 0
                                         WHEN r.role IS NOT NULL THEN 1 ELSE 2 END,
                                    r.valid_from DESC) AS rn
                FROM base b JOIN stg_rate_cards r
                  ON r.is_current AND r.state = 'valid' AND r.project_code = b.project_code
                 AND r.currency = b.currency
                 AND r.valid_from <= b.work_date
                 AND (r.valid_to IS NULL OR r.valid_to >= b.work_date)
                 AND (r.employee_id = b.employee_id
                      OR (r.employee_id IS NULL AND (r.role = b.emp_role OR r.role IS NULL)))
                WHERE b.needs_rate
            """,
            # Intercompany entries whose two entities book in different currencies: the
            # exchange rate each needs (employee's currency -> project's), and the one found.
            "icn": """
                SELECT b.row_key, b.version, b.emp_currency AS from_currency,
                       b.prj_currency AS to_currency, {fx_ref_date} AS ref_date
                FROM base b
                WHERE b.ic_policy AND b.emp_legal_entity <> b.prj_legal_entity
                  AND b.emp_currency <> b.prj_currency AND b.work_date IS NOT NULL
            """,
            "icfx": "{fx_lookup}",
        },
        # The amount, rounded once: a fixed price as it is; else rate x the exact duration
        # when the PSA gave one (02:14:54 x 75 = 168.63, where 2.2483 h x 75 = 168.62), else
        # rate x hours. `{exact_amount}` is the dialect's exact integer division.
        final="""SELECT base.*, rc.bill_rate AS rc_rate,
                coalesce(base.ic_policy AND base.emp_legal_entity <> base.prj_legal_entity,
                         FALSE) AS ic_entry,
                {ic_transfer_rate} AS ic_transfer_rate,
                icn.row_key IS NOT NULL AS ic_needs_fx, icn.ref_date AS ic_ref_date,
                '{fx_rule}' AS ic_fx_rule, {fx_max_age} AS ic_fx_max_age,
                icfx.rate AS ic_fx_rate, icfx.rate_date AS ic_fx_rate_date,
                icfx.inverse AS ic_fx_inverse, icfx.source AS ic_fx_source,
                CASE WHEN NOT base.billable THEN 0
                     WHEN base.fixed_amount IS NOT NULL THEN base.fixed_amount
                     WHEN base.duration_seconds IS NOT NULL THEN {exact_amount}
                     ELSE ROUND(base.hours * coalesce(base.bill_rate, rc.bill_rate, 0), 2)
                END AS calc_amount
            FROM base LEFT JOIN rc ON rc.row_key = base.row_key AND rc.version = base.version
                                  AND rc.rn = 1
            LEFT JOIN icn ON icn.row_key = base.row_key AND icn.version = base.version
            LEFT JOIN icfx ON icfx.row_key = base.row_key AND icfx.version = base.version""",
    ),
    "invoices": Candidate(
        ctes={
            # The time entries each time line names (`entry_ids`, separated by `;`).
            "refs": """
                SELECT r.row_key, r.version, r.project_code, trim(r.ref) AS entry_id
                FROM (SELECT s.row_key, s.version, s.project_code, {split_entry_ids} AS ref
                      FROM scope s WHERE s.line_kind = 'time' AND s.entry_ids IS NOT NULL) r
                WHERE trim(r.ref) <> ''
            """,
            "refchk": """
                SELECT r.row_key, r.version,
                  SUM(CASE WHEN e.row_key IS NULL THEN 1 ELSE 0 END) AS n_unknown,
                  SUM(CASE WHEN e.row_key IS NOT NULL AND (e.approval_status <> 'approved'
                           OR e.deleted) THEN 1 ELSE 0 END) AS n_unapproved,
                  SUM(CASE WHEN e.project_code <> r.project_code THEN 1 ELSE 0 END) AS n_other_project,
                  string_agg(CASE WHEN e.row_key IS NULL THEN r.entry_id END, ';') AS unknown_ids,
                  string_agg(CASE WHEN e.row_key IS NOT NULL AND (e.approval_status <> 'approved'
                           OR e.deleted) THEN r.entry_id END, ';') AS unapproved_ids,
                  string_agg(CASE WHEN e.project_code <> r.project_code THEN r.entry_id END, ';')
                      AS other_project_ids
                FROM refs r
                LEFT JOIN stg_time_entries e ON e.is_current AND e.row_key = r.entry_id
                GROUP BY r.row_key, r.version
            """,
        },
        columns=(
            _PROJECT_FOUND,
            "p.currency AS prj_currency",
            "p.customer_id AS prj_customer",
            "p.legal_entity AS prj_legal_entity",
            "coalesce(c.n_unknown, 0) AS n_unknown",
            "coalesce(c.n_unapproved, 0) AS n_unapproved",
            "coalesce(c.n_other_project, 0) AS n_other_project",
            "c.unknown_ids",
            "c.unapproved_ids",
            "c.other_project_ids",
        ),
        joins=(_PROJECT, "LEFT JOIN refchk c ON c.row_key = s.row_key AND c.version = s.version"),
    ),
    "assignments": Candidate(
        ctes={
            # Working days (Monday to Friday) of each date range, day by day: the weeks its
            # hours are spread over (`staging_models.resource_plans`) and the weekly maximum.
            # Ranges past MAX_RANGE_DAYS are refused by their own rule, never expanded.
            "wd": f"""
                SELECT s.row_key, s.version,
                       SUM(CASE WHEN extract(isodow FROM g.d) < 6 THEN 1 ELSE 0 END) AS working_days
                FROM scope s CROSS JOIN LATERAL generate_series(
                    CAST(s.start_date AS TIMESTAMP), CAST(s.end_date AS TIMESTAMP),
                    INTERVAL '1 day') AS g(d)
                WHERE s.start_date <= s.end_date AND s.end_date - s.start_date < {MAX_RANGE_DAYS}
                GROUP BY s.row_key, s.version
            """,
        },
        columns=(
            "e.row_key IS NOT NULL AS emp_found",
            _PROJECT_FOUND,
            "t.row_key IS NOT NULL AS task_found",
            "w.working_days",
        ),
        joins=(
            "LEFT JOIN stg_employees e ON e.is_current AND e.row_key = s.employee_id",
            _PROJECT,
            """LEFT JOIN stg_project_tasks t ON t.is_current AND t.state = 'valid'
                     AND t.project_code = s.project_code AND t.task_code = s.task_code""",
            "LEFT JOIN wd w ON w.row_key = s.row_key AND w.version = s.version",
        ),
    ),
    "project_templates": Candidate(),
    "fx_rates": Candidate(),
    "crm_deals": Candidate(
        ctes={
            # A legal entity's currencies: those its current, valid employees and projects use.
            "le": """
                SELECT legal_entity, currency FROM stg_employees
                WHERE is_current AND state = 'valid' AND legal_entity IN (SELECT legal_entity FROM scope)
                UNION
                SELECT legal_entity, currency FROM stg_projects
                WHERE is_current AND state = 'valid' AND legal_entity IN (SELECT legal_entity FROM scope)
            """,
            "le_sum": """
                SELECT legal_entity, string_agg(currency, ', ' ORDER BY currency) AS currencies
                FROM le GROUP BY legal_entity
            """,
            "tpl": """
                SELECT DISTINCT template_code FROM stg_project_templates
                WHERE is_current AND state = 'valid'
            """,
            # Projects with time in the posting ledger (sent or confirmed): their legal entity
            # is fixed.
            "posted": """
                SELECT DISTINCT project_code FROM posting_ledger
                WHERE state IN ('sent', 'confirmed')
                  AND project_code IN (SELECT row_key FROM scope)
            """,
        },
        columns=(
            "les.legal_entity IS NOT NULL AS le_found",
            "les.currencies AS le_currencies",
            "lec.currency IS NOT NULL AS le_currency_found",
            "tpl.template_code IS NOT NULL AS tpl_found",
            _PROJECT_FOUND,
            "ds.currency AS set_currency",
            "ds.customer_id AS set_customer_id",
            "ds.template_code AS set_template_code",
            "ds.legal_entity AS set_legal_entity",
            "pst.project_code IS NOT NULL AS time_posted",
        ),
        joins=(
            "LEFT JOIN le_sum les ON les.legal_entity = s.legal_entity",
            "LEFT JOIN le lec ON lec.legal_entity = s.legal_entity AND lec.currency = s.currency",
            "LEFT JOIN tpl ON tpl.template_code = s.template_code",
            "LEFT JOIN stg_projects p ON p.is_current AND p.row_key = s.row_key",
            "LEFT JOIN deal_setups ds ON ds.deal_id = s.row_key",
            "LEFT JOIN posted pst ON pst.project_code = s.row_key",
        ),
    ),
}

#: Expenses: the master data (as time entries), the configured categories and receipt threshold
#: (`{expense_settings}`, `{expense_categories}`: `_expense_settings_sql`), and the first claim
#: of each receipt: a receipt another current approved expense claims, which is valid or sorts
#: first, is claimed twice (the first claimant passes, the others are quarantined).
CANDIDATES["expenses"] = Candidate(
    ctes={
        "cfg": "{expense_settings}",
        "cats": "{expense_categories}",
        "claims": """
            SELECT c.row_key, c.receipt_ref, c.state FROM stg_expenses c
            WHERE c.is_current AND NOT c.deleted AND c.receipt_ref IS NOT NULL
              AND c.approval_status = 'approved'
              AND c.receipt_ref IN (SELECT receipt_ref FROM scope)
        """,
        "receipts": """
            SELECT s.row_key, s.version, MIN(c.row_key) AS claimed_by
            FROM scope s JOIN claims c
              ON c.receipt_ref = s.receipt_ref AND c.row_key <> s.row_key
             AND (c.state = 'valid' OR c.row_key < s.row_key)
            GROUP BY s.row_key, s.version
        """,
    },
    columns=(
        "e.row_key IS NOT NULL AS emp_found",
        "e.legal_entity AS emp_legal_entity",
        _PROJECT_FOUND,
        "p.state AS prj_state",
        "p.status AS prj_status",
        "p.start_date AS prj_start",
        "p.end_date AS prj_end",
        "p.legal_entity AS prj_legal_entity",
        "p.currency AS prj_currency",
        "p.billing_method AS prj_billing",
        "p.customer_id AS prj_customer",
        "t.row_key IS NOT NULL AS task_found",
        "CAST(:latest_today AS DATE) AS latest_today",
        "k.category IS NOT NULL AS category_known",
        "cfg.known_categories",
        "cfg.receipt_above",
        "r.claimed_by AS receipt_claimed_by",
        # amount x (1 + markup / 100) in cents is amount x (100 + markup): rounded half up
        # (amounts are positive) to a whole cent, exactly (no division: DuckDB divides
        # decimals as floats).
        "CASE WHEN s.billable THEN CAST(ROUND(CAST(s.amount AS DECIMAL(38,2))"
        " * (100 + coalesce(s.markup_percent, 0)), 0) AS DECIMAL(38,0))"
        " * CAST(0.01 AS DECIMAL(3,2)) ELSE 0 END AS calc_rebill",
    ),
    joins=(
        "LEFT JOIN stg_employees e ON e.is_current AND e.row_key = s.employee_id",
        _PROJECT,
        """LEFT JOIN stg_project_tasks t ON t.is_current AND t.state = 'valid'
                 AND t.project_code = s.project_code AND t.task_code = s.task_code""",
        "LEFT JOIN cats k ON k.category = lower(s.category)",
        "CROSS JOIN cfg",
        "LEFT JOIN receipts r ON r.row_key = s.row_key AND r.version = s.version",
    ),
)


def _expense_settings_sql() -> dict[str, str]:
    """The expense contracts' settings as SQL: the receipt threshold and the categories."""
    from decimal import Decimal

    from config.settings import current

    settings = current()
    above = Decimal(settings.expense_receipt_required_above)
    names = settings.expense_categories
    quoted = [f"'{n.replace(chr(39), chr(39) * 2)}'" for n in names]
    listed = ", ".join(names).replace("'", "''")
    return {
        "expense_settings": f"SELECT CAST({above} AS DECIMAL(18,2)) AS receipt_above, "
        f"CAST('{listed}' AS VARCHAR) AS known_categories",
        "expense_categories": " UNION ALL ".join(
            f"SELECT CAST({q} AS VARCHAR) AS category" for q in quoted
        ),
    }


def _exact_amount_sql(db: StagingDB) -> str:
    """Rate x duration_seconds / 3600, rounded half up to the cent, exactly: on integers
    (DuckDB divides decimals as floats). The rate has 4 decimals, so n = seconds x rate x
    10000 is a whole number, and the amount in cents is n / 360000."""
    n = "base.duration_seconds * coalesce(base.bill_rate, rc.bill_rate, 0) * 10000"
    if db.is_duckdb:
        cents = f"(CAST({n} AS HUGEINT) * 2 + 360000) // 720000"
    else:
        cents = f"div(CAST({n} AS NUMERIC) * 2 + 360000, 720000)"
    return f"CAST({cents} AS DECIMAL(18,0)) * CAST(0.01 AS DECIMAL(3,2))"


def _intercompany_sql(db: StagingDB) -> dict[str, str]:
    """The intercompany settings as SQL (docs/intercompany.md): the policy's flag, the
    transfer rate over the joined entry `base` (cost plus markup, or the transfer rate card by
    the employee's role; half up to 4 decimals), and the exchange-rate lookup."""
    from config.settings import current

    settings = current()
    if settings.intercompany_transfer_price == "cost_plus":
        markup = Decimal(settings.intercompany_markup_percent)
        rate = (
            "ROUND(base.emp_cost_rate * (100 + CAST("
            f"{markup} AS DECIMAL(9,4))) * CAST(0.01 AS DECIMAL(3,2)), 4)"
        )
    else:
        card = settings.intercompany_rate_card
        when = " ".join(
            f"WHEN base.emp_role = '{role.replace(chr(39), chr(39) * 2)}' "
            f"THEN CAST({Decimal(r)} AS DECIMAL(14,4))"
            for role, r in sorted(card.items())
            if role != "*"
        )
        other = f"CAST({Decimal(card['*'])} AS DECIMAL(14,4))" if "*" in card else "NULL"
        rate = f"CASE {when} ELSE {other} END" if when else other
    dialect = "duckdb" if db.is_duckdb else "postgresql"
    return {
        "ic_policy": "TRUE" if settings.intercompany_policy == "intercompany" else "FALSE",
        "ic_transfer_rate": f"CASE WHEN base.ic_policy THEN CAST({rate} AS DECIMAL(14,4)) END",
        "fx_ref_date": fx.reference_date_sql(dialect, "b.work_date", settings.fx_rate_date),
        "fx_lookup": fx.lookup_sql("icn", ("row_key", "version"), settings.fx_max_age_days),
        "fx_rule": settings.fx_rate_date,
        "fx_max_age": str(int(settings.fx_max_age_days)),
    }


def _day_scope_sql(part: Part) -> str:
    """Which approved entries `day` sums: those of the candidates' employees; in a part of
    several, those of the part's own (employee, work date) pairs, all `day` is joined with
    (grouping every employee's days in every part was as much work as one pass)."""
    if part[1] > 1:
        return """EXISTS (SELECT 1 FROM scope x
                          WHERE x.employee_id = stg_time_entries.employee_id
                            AND x.work_date = stg_time_entries.work_date)"""
    return "employee_id IN (SELECT employee_id FROM scope)"


def _candidate_sql(db: StagingDB, ds: Dataset, part: Part = (0, 1)) -> str:
    """SELECT of the candidate rows `x` that the rules of `ds` are written against."""
    c = CANDIDATES[ds.name]
    dialect = {
        "split_entry_ids": db.split_list_sql("s.entry_ids"),
        "day_scope": _day_scope_sql(part),
    }
    if ds.name == "expenses":
        dialect.update(_expense_settings_sql())
    if ds.name == "time_entries":
        dialect.update(_intercompany_sql(db))
    ctes = {"scope": _scope_sql(ds, part), "dup": _dup_sql(ds, part)}
    ctes.update((name, sql.format_map(dialect)) for name, sql in c.ctes.items())
    columns = [col.format_map(dialect) for col in c.columns]
    select = (
        f"SELECT {', '.join(['s.*', 'dup.row_key IS NOT NULL AS dup_conflict', *columns])}"
        f" FROM scope s LEFT JOIN dup ON dup.load_id = s.load_id AND dup.row_key = s.row_key"
        f"{''.join(f' {j}' for j in c.joins)}"
    )
    if c.then:
        ctes["base"] = select
        ctes.update((name, sql.format_map(dialect)) for name, sql in c.then.items())
        select = c.final.format_map({**dialect, "exact_amount": _exact_amount_sql(db)})
    return f"WITH {', '.join(f'{name} AS ({sql})' for name, sql in ctes.items())} {select}"


def _violations_sql(dataset: str, cand: str, *, one_scan: bool = False) -> str:
    """One row per candidate row and rule it breaks: row_key, version, rule_code, message.

    Per rule, a scan of the candidates (UNION ALL): cheapest in DuckDB, which reads only the
    columns a rule needs. `one_scan` (PostgreSQL) finds the rows breaking any rule in one scan
    and expands only those, one row per broken rule: PostgreSQL reads a row-wise temporary
    table whole for every scan, and a wide one outgrows its temp buffers, so 36 scans of
    50,000 candidates took 3 s where one takes a tenth of that.
    """
    rules = RULES[dataset]
    if not one_scan:
        parts = [
            f"SELECT x.row_key, x.version, '{r.code}' AS rule_code, "
            f"coalesce({r.message}, '{r.code}') AS message FROM {cand} x WHERE coalesce({r.violation}, FALSE)"
            for r in rules
        ]
        return " UNION ALL ".join(parts)
    any_rule = " OR ".join(f"coalesce({r.violation}, FALSE)" for r in rules)
    values = ", ".join(
        f"('{r.code}', CASE WHEN coalesce({r.violation}, FALSE) "
        f"THEN coalesce({r.message}, '{r.code}') END)"
        for r in rules
    )
    return f"""SELECT x.row_key, x.version, v.rule_code, v.message
        FROM (SELECT * FROM {cand} x WHERE {any_rule}) x
        CROSS JOIN LATERAL (VALUES {values}) v(rule_code, message)
        WHERE v.message IS NOT NULL"""


def _exec(conn: Connection, sql: str, **params) -> int:
    return conn.execute(sa.text(sql), params).rowcount


def _validated_insert(
    dataset: str, cand: str, viol: str, *, ordered: bool = False, dialect: str = "duckdb"
) -> str | None:
    """INSERT of the valid candidates into `validated_*`. `ordered` (PostgreSQL): in the order of
    its unique index, whose pages then fill one after the other instead of at random (851,191
    entries: 2.6 s of CPU in the order of the candidates, 1.8 s sorted, and half the time)."""
    ok = (
        f"NOT EXISTS (SELECT 1 FROM {viol} w WHERE w.row_key = c.row_key AND w.version = c.version)"
    )
    if dataset == "time_entries":
        rate = "coalesce(c.bill_rate, c.rc_rate)"
        ic_rec = fx.cents_sql(dialect, "c.hours", "c.ic_transfer_rate")
        ic_pay = fx.converted_cents_sql(
            dialect, "c.hours", "c.ic_transfer_rate", "c.ic_fx_rate", "c.ic_fx_inverse"
        )
        return f"""
            INSERT INTO validated_time_entries
              (entry_id, version, content_hash, legal_entity, customer_id, employee_id, employee_name,
               project_code, task_code, work_date, hours, billable, bill_rate, rate_source, amount,
               currency, description, approved_at, validated_at, ic_legal_entity,
               ic_transfer_rate, ic_rec_currency, ic_rec_amount, ic_pay_currency, ic_pay_amount,
               ic_fx_rate, ic_fx_rate_date, ic_fx_inverse, ic_fx_source)
            SELECT c.row_key, c.version, c.content_hash, c.prj_legal_entity, c.prj_customer,
                   c.employee_id, c.employee_name, c.project_code, c.task_code, c.work_date, c.hours,
                   c.billable, coalesce({rate}, 0),
                   CASE WHEN c.fixed_amount IS NOT NULL THEN 'fixed'
                        WHEN c.bill_rate IS NOT NULL THEN 'entry'
                        WHEN c.rc_rate IS NOT NULL THEN 'rate_card' ELSE 'none' END,
                   -- Money is rounded once, in the candidate (calc_amount), to the cent.
                   c.calc_amount,
                   c.currency, c.description, c.approved_at, :now,
                   -- Intercompany (docs/intercompany.md): the employee's entity receives hours x
                   -- transfer rate in its currency; the project's owes it in its own, converted
                   -- at the rate found (rate, date, direction and source kept), each rounded
                   -- half up to the cent once.
                   CASE WHEN c.ic_entry THEN c.emp_legal_entity END,
                   CASE WHEN c.ic_entry THEN c.ic_transfer_rate END,
                   CASE WHEN c.ic_entry THEN c.emp_currency END,
                   CASE WHEN c.ic_entry THEN {ic_rec} END,
                   CASE WHEN c.ic_entry THEN c.prj_currency END,
                   CASE WHEN c.ic_entry AND c.ic_needs_fx THEN {ic_pay}
                        WHEN c.ic_entry THEN {ic_rec} END,
                   CASE WHEN c.ic_entry THEN c.ic_fx_rate END,
                   CASE WHEN c.ic_entry THEN c.ic_fx_rate_date END,
                   CASE WHEN c.ic_entry THEN c.ic_fx_inverse END,
                   CASE WHEN c.ic_entry THEN c.ic_fx_source END
            FROM {cand} c WHERE {ok}{" ORDER BY c.row_key, c.version" if ordered else ""}"""
    if dataset == "invoices":
        return f"""
            INSERT INTO validated_invoice_lines
              (invoice_id, line_no, version, content_hash, legal_entity, project_code, customer_id,
               currency, issue_date, due_date, status, line_kind, description, quantity, unit_price,
               amount, entry_ids, validated_at)
            SELECT c.invoice_id, c.line_no, c.version, c.content_hash, c.prj_legal_entity,
                   c.project_code, c.customer_id, c.currency, c.issue_date, c.due_date, c.status,
                   c.line_kind, c.description, c.quantity, c.unit_price, c.amount, c.entry_ids, :now
            FROM {cand} c WHERE {ok}{" ORDER BY c.invoice_id, c.line_no, c.version" if ordered else ""}"""
    if dataset == "expenses":
        return f"""
            INSERT INTO validated_expenses
              (expense_id, version, content_hash, legal_entity, customer_id, employee_id,
               project_code, task_code, expense_date, category, amount, tax_amount, currency,
               billable, reimbursable, markup_percent, rebill_amount, receipt_ref, description,
               approved_at, validated_at)
            SELECT c.row_key, c.version, c.content_hash, c.prj_legal_entity, c.prj_customer,
                   c.employee_id, c.project_code, c.task_code, c.expense_date, lower(c.category),
                   c.amount, coalesce(c.tax_amount, 0), c.currency, c.billable, c.reimbursable,
                   coalesce(c.markup_percent, 0), c.calc_rebill, c.receipt_ref, c.description,
                   c.approved_at, :now
            FROM {cand} c WHERE {ok}{" ORDER BY c.row_key, c.version" if ordered else ""}"""
    return None


def _validated_cleanup(conn: Connection, dataset: str) -> None:
    """Validated rows exist only for versions that are still `valid` (current)."""
    if dataset == "time_entries":
        _exec(
            conn,
            """DELETE FROM validated_time_entries WHERE EXISTS (
                 SELECT 1 FROM stg_time_entries s WHERE s.row_key = validated_time_entries.entry_id
                   AND s.version = validated_time_entries.version AND s.state <> 'valid')""",
        )
    elif dataset == "invoices":
        _exec(
            conn,
            """DELETE FROM validated_invoice_lines WHERE EXISTS (
                 SELECT 1 FROM stg_invoices s WHERE s.invoice_id = validated_invoice_lines.invoice_id
                   AND s.line_no = validated_invoice_lines.line_no
                   AND s.version = validated_invoice_lines.version AND s.state <> 'valid')""",
        )
    elif dataset == "expenses":
        _exec(
            conn,
            """DELETE FROM validated_expenses WHERE EXISTS (
                 SELECT 1 FROM stg_expenses s WHERE s.row_key = validated_expenses.expense_id
                   AND s.version = validated_expenses.version AND s.state <> 'valid')""",
        )


def _close_quarantine(conn: Connection, ds: Dataset, state: str, now: datetime, actor: str) -> int:
    """Open quarantine rows whose version left the candidate set (superseded / not postable)."""
    match = f"""EXISTS (SELECT 1 FROM {ds.versions_table} s WHERE s.row_key = quarantine.row_key
                 AND s.version = quarantine.version AND s.state = '{state}')"""
    _exec(
        conn,
        f"""INSERT INTO quarantine_events (dataset, row_key, version, event, event_at, actor, reason)
            SELECT dataset, row_key, version, 'superseded', :now, :actor, 'a newer version arrived'
            FROM quarantine WHERE dataset = :ds AND status = 'open' AND {match}""",
        now=now,
        actor=actor,
        ds=ds.name,
    )
    return _exec(
        conn,
        f"""UPDATE quarantine SET status = 'superseded', status_at = :now, status_by = :actor,
                   status_reason = 'a newer version arrived'
            WHERE dataset = :ds AND status = 'open' AND {match}""",
        now=now,
        actor=actor,
        ds=ds.name,
    )


def settle_states(conn: Connection, ds: Dataset, *, now: datetime, actor: str) -> tuple[int, int]:
    """Steps 1 and 2: superseded versions, and current time entries and expenses that are not
    postable (and deleted assignments: tombstones plan nothing)."""
    stg = ds.versions_table
    superseded = _exec(
        conn,
        f"UPDATE {stg} SET state = 'superseded' WHERE NOT is_current AND state <> 'superseded'",
    )
    _close_quarantine(conn, ds, "superseded", now, actor)
    not_postable = 0
    if ds.name == "crm_deals":  # a deal not (or no longer) won waits; nothing is set up
        not_postable = _exec(
            conn,
            f"""UPDATE {stg} SET state = 'not_postable'
                WHERE is_current AND state IN ('pending', 'quarantined')
                  AND coalesce(stage, '') <> '{DEAL_WON}'""",
        )
        _close_quarantine(conn, ds, "not_postable", now, actor)
    if ds.name in APPROVED_DATASETS:
        not_postable = _exec(
            conn,
            f"""UPDATE {stg} SET state = 'not_postable'
                WHERE is_current AND state IN ('pending', 'quarantined')
                  AND (deleted OR approval_status IN ('draft', 'submitted', 'rejected'))
                  -- A file that contradicts itself about an entry is quarantined, whatever its status.
                  AND NOT EXISTS (
                      SELECT 1 FROM {ds.landing_table} l
                      WHERE l.load_id = {stg}.load_id AND l.row_key = {stg}.row_key
                        AND l.content_hash <> {stg}.content_hash)""",
        )
        _close_quarantine(conn, ds, "not_postable", now, actor)
    elif ds.name == "assignments":
        # A deleted assignment plans nothing: a tombstone, kept as a version (not quarantined
        # unless its file contradicts itself about it).
        not_postable = _exec(
            conn,
            f"""UPDATE {stg} SET state = 'not_postable'
                WHERE is_current AND state IN ('pending', 'quarantined') AND deleted
                  AND NOT EXISTS (
                      SELECT 1 FROM land_assignments l
                      WHERE l.load_id = {stg}.load_id AND l.row_key = {stg}.row_key
                        AND l.content_hash <> {stg}.content_hash)""",
        )
        _close_quarantine(conn, ds, "not_postable", now, actor)
    return superseded, not_postable


def _states_update_sql(db: StagingDB, stg: str, cand: str, bad: str, qsum: str) -> str:
    """UPDATE setting each candidate version `valid` or `quarantined` (`bad`: it has violations).

    DuckDB decorrelates `CASE WHEN EXISTS` into one join; PostgreSQL runs an EXISTS in the SET
    list once per updated row (a scan of every violation for every candidate), so there the
    outcome comes from a join with the quarantine summary. DuckDB's UPDATE ... FROM takes
    about twice as long as its own form (200,000 entries), so each keeps the faster one.
    """
    if db.is_duckdb:
        in_cand = f"EXISTS (SELECT 1 FROM {cand} c WHERE c.row_key = {stg}.row_key AND c.version = {stg}.version)"
        return f"""UPDATE {stg} SET state = CASE WHEN {bad} THEN 'quarantined' ELSE 'valid' END
                   WHERE {in_cand}"""
    # Only rows whose state changes: PostgreSQL writes a new version of the whole row for
    # every row an UPDATE touches (a row quarantined again would be rewritten on every run).
    return f"""UPDATE {stg} SET state = u.state
        FROM (SELECT c.row_key, c.version,
                     CASE WHEN q.row_key IS NULL THEN 'valid' ELSE 'quarantined' END AS state
              FROM {cand} c LEFT JOIN {qsum} q ON q.row_key = c.row_key AND q.version = c.version) u
        WHERE {stg}.row_key = u.row_key AND {stg}.version = u.version
          AND {stg}.state <> u.state"""


def validate_dataset(
    db: StagingDB,
    conn: Connection,
    dataset: str,
    *,
    now: datetime,
    actor: str,
    part: Part = (0, 1),
) -> DatasetValidation:
    """Validate one part of a dataset's candidates (the first part also settles states)."""
    ds = DATASETS[dataset]
    stg = ds.versions_table
    out = DatasetValidation(dataset)
    if not db.is_duckdb:
        # The candidate statement hashes and sorts wide rows: in memory, not in 4 MB runs on
        # disk (51,000 entries: 2.0 s with temp files, 1.5 s without). So does settling the
        # states (a hash of every landed row: 100 MB on disk at 1M). This part only.
        conn.exec_driver_sql(f"SET LOCAL work_mem = '{CANDIDATE_WORK_MEM}'")
    if part[0] == 0:
        out.superseded, out.not_postable = settle_states(conn, ds, now=now, actor=actor)
        _validated_cleanup(conn, dataset)

    cand, viol = f"cand_{dataset}", f"viol_{dataset}"
    # Latest calendar date anywhere on earth (UTC+14): only later work dates are "future".
    latest_today = (now + timedelta(hours=14)).date()
    for t in (cand, viol):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {t}")
    conn.execute(
        sa.text(f"CREATE TEMP TABLE {cand} AS {_candidate_sql(db, ds, part)}"),
        {"latest_today": latest_today},
    )
    # Read by every statement below, by key (no autovacuum for temporary tables); from a small
    # sample: ANALYZE of 51,000 candidates took 0.16-0.21 s at the default target, 0.04 s at 10.
    db.analyze(conn, f"{cand} (row_key, version)", target=SCRATCH_STATISTICS_TARGET)
    violations = _violations_sql(dataset, cand, one_scan=not db.is_duckdb)
    conn.exec_driver_sql(f"CREATE TEMP TABLE {viol} AS {violations}")
    db.analyze(conn, f"{viol} (row_key, version, rule_code)", target=SCRATCH_STATISTICS_TARGET)
    out.checked = conn.execute(sa.text(f"SELECT COUNT(*) FROM {cand}")).scalar_one()
    out.by_rule = dict(
        conn.execute(
            # Rows per rule (a row breaking a rule twice in one file still counts once).
            sa.text(
                f"""SELECT rule_code, COUNT(*) FROM (SELECT DISTINCT rule_code, row_key, version
                    FROM {viol}) v GROUP BY rule_code ORDER BY rule_code"""
            )
        ).fetchall()
    )
    bad = f"EXISTS (SELECT 1 FROM {viol} w WHERE w.row_key = {{t}}.row_key AND w.version = {{t}}.version)"
    in_cand = f"EXISTS (SELECT 1 FROM {cand} c WHERE c.row_key = {{t}}.row_key AND c.version = {{t}}.version)"

    # Violations: replace those of every candidate row.
    _exec(
        conn,
        f"DELETE FROM quarantine_violations WHERE dataset = :ds AND {in_cand.format(t='quarantine_violations')}",
        ds=dataset,
    )
    _exec(
        conn,
        f"""INSERT INTO quarantine_violations (dataset, row_key, version, rule_code, message)
            SELECT :ds, row_key, version, rule_code, min(message) FROM {viol}
            GROUP BY row_key, version, rule_code""",
        ds=dataset,
    )
    # Quarantine rows: refresh the open ones, add the new ones.
    summary = f"""SELECT row_key, version,
                     string_agg(rule_code, ',' ORDER BY rule_code) AS rule_codes,
                     string_agg(message, '; ' ORDER BY rule_code) AS messages
                  FROM (SELECT DISTINCT row_key, version, rule_code, message FROM {viol}) v
                  GROUP BY row_key, version"""
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS qsum_{dataset}")
    # Whether the quarantine holds the row already, decided before the INSERT below adds to
    # it: PostgreSQL planned the INSERT's own NOT EXISTS as a scan of the (empty when planned)
    # quarantine per new row, and each scan read the pages that INSERT had appended so far
    # (7,900 new rows: 1.3 s, growing with the square of the count).
    conn.exec_driver_sql(
        f"""CREATE TEMP TABLE qsum_{dataset} AS
            SELECT v.*, NOT EXISTS (SELECT 1 FROM quarantine o WHERE o.dataset = '{dataset}'
                                    AND o.row_key = v.row_key AND o.version = v.version) AS is_new
            FROM ({summary}) v"""
    )
    db.analyze(conn, f"qsum_{dataset} (row_key, version)", target=SCRATCH_STATISTICS_TARGET)
    _exec(
        conn,
        f"""UPDATE quarantine SET rule_codes = q.rule_codes, messages = q.messages,
                   last_seen = :now, status = 'open'
            FROM qsum_{dataset} q
            WHERE quarantine.dataset = :ds AND quarantine.row_key = q.row_key
              AND quarantine.version = q.version""",
        now=now,
        ds=dataset,
    )
    raw_json = db.json_object_sql(
        [(c.name, f"l.raw_{c.name}" if c.type != "text" else f"l.{c.name}") for c in ds.columns]
    )
    out.newly_quarantined = _exec(
        conn,
        f"""INSERT INTO quarantine (dataset, row_key, version, load_id, source_file, row_no, rule_codes,
                                    messages, raw_values, first_seen, last_seen, status)
            SELECT :ds, q.row_key, q.version, s.load_id, ld.file_name, s.row_no, q.rule_codes,
                   q.messages, {raw_json}, :now, :now, 'open'
            FROM qsum_{dataset} q
            JOIN {stg} s ON s.row_key = q.row_key AND s.version = q.version
            JOIN {ds.landing_table} l ON l.load_id = s.load_id AND l.row_no = s.row_no
            LEFT JOIN loads ld ON ld.load_id = s.load_id
            WHERE q.is_new""",
        now=now,
        ds=dataset,
    )
    # The releases below join the quarantine with the candidates: plan them on its new rows.
    db.analyze(conn, _ANALYZED["quarantine"])
    _exec(
        conn,
        f"""INSERT INTO quarantine_events (dataset, row_key, version, event, event_at, actor, reason)
            SELECT :ds, q.row_key, q.version, 'quarantined', :now, :actor, q.rule_codes
            FROM qsum_{dataset} q JOIN {stg} s ON s.row_key = q.row_key AND s.version = q.version
            WHERE s.state = 'pending'""",
        now=now,
        actor=actor,
        ds=dataset,
    )
    # Released: quarantined before, passes now (master data fixed).
    released = f"""quarantine.dataset = :ds AND quarantine.status = 'open'
                   AND {in_cand.format(t="quarantine")} AND NOT {bad.format(t="quarantine")}"""
    _exec(
        conn,
        f"""INSERT INTO quarantine_events (dataset, row_key, version, event, event_at, actor, reason)
            SELECT dataset, row_key, version, 'released', :now, :actor, 'passes every rule now'
            FROM quarantine WHERE {released}""",
        now=now,
        actor=actor,
        ds=dataset,
    )
    out.released = _exec(
        conn,
        f"""UPDATE quarantine SET status = 'released', status_at = :now, status_by = :actor,
                   status_reason = 'passes every rule now'
            WHERE {released}""",
        now=now,
        actor=actor,
        ds=dataset,
    )
    # States of the candidate rows, then the validated copy of the valid ones.
    # One pass over the candidates sets both outcomes.
    _exec(conn, _states_update_sql(db, stg, cand, bad.format(t=stg), f"qsum_{dataset}"))
    out.quarantined = conn.execute(
        sa.text(f"SELECT COUNT(*) FROM (SELECT DISTINCT row_key, version FROM {viol}) v")
    ).scalar_one()
    out.valid = out.checked - out.quarantined
    insert = _validated_insert(
        dataset,
        cand,
        viol,
        ordered=not db.is_duckdb,
        dialect="duckdb" if db.is_duckdb else "postgresql",
    )
    if insert:
        _exec(conn, insert, now=now)
    for t in (cand, viol, f"qsum_{dataset}"):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {t}")
    # What validation wrote, analyzed before the next dataset, a posting window or a
    # reconciliation plans on it: the states moved (pending -> valid ...), rows were added.
    db.analyze(
        conn,
        f"{stg} (state)",
        _ANALYZED["quarantine_violations"],
        *([_ANALYZED[VALIDATED[dataset]]] if dataset in VALIDATED else []),
    )
    return out


def _parts(db: StagingDB, ds: Dataset, batch_rows: int) -> int:
    waiting = db.scalar(
        f"SELECT COUNT(*) FROM {ds.versions_table} "
        "WHERE is_current AND state IN ('pending', 'quarantined')"
    )
    return max(1, -(-int(waiting or 0) // max(batch_rows, 1)))


def _add(total: DatasetValidation, part: DatasetValidation) -> None:
    for f in ("checked", "valid", "quarantined", "released", "newly_quarantined"):
        setattr(total, f, getattr(total, f) + getattr(part, f))
    total.superseded += part.superseded
    total.not_postable += part.not_postable
    for code, n in part.by_rule.items():
        total.by_rule[code] = total.by_rule.get(code, 0) + n


def validate_all(
    db: StagingDB,
    *,
    now: datetime | None = None,
    actor: str = "stagepost",
    datasets=ORDER,
    batch_rows: int | None = None,
) -> dict[str, DatasetValidation]:
    """Validate datasets in dependency order, each in parts of at most `batch_rows` candidates
    (default: `BATCH_ROWS` on DuckDB, `BATCH_ROWS_POSTGRES`), each part in its own transaction."""
    now = now or datetime.now(UTC)
    if batch_rows is None:
        batch_rows = BATCH_ROWS if db.is_duckdb else BATCH_ROWS_POSTGRES
    results = {}
    for dataset in datasets:
        total = DatasetValidation(dataset)
        n = _parts(db, DATASETS[dataset], batch_rows)
        for i in range(n):
            with db.begin() as conn:
                _add(total, validate_dataset(db, conn, dataset, now=now, actor=actor, part=(i, n)))
        total.by_rule = dict(sorted(total.by_rule.items()))
        results[dataset] = total
    return results


# -- operator actions ---------------------------------------------------------------------------


def ignore_quarantined(
    db: StagingDB,
    dataset: str,
    *,
    reason: str,
    actor: str,
    row_keys: list[str] | None = None,
    rule_code: str | None = None,
) -> int:
    """Mark open quarantine rows ignored (they stay out of posting, and are no longer retried)."""
    if not reason.strip():
        raise ValueError("ignoring quarantined rows needs a reason")
    if not row_keys and not rule_code:
        raise ValueError("name the rows to ignore: row_keys or rule_code")
    cond = "dataset = :ds AND status = 'open'"
    params: dict = {"ds": dataset, "now": datetime.now(UTC), "actor": actor, "reason": reason}
    if row_keys:
        cond += " AND row_key IN :keys"
        params["keys"] = list(row_keys)
    if rule_code:
        cond += " AND position(',' || :code || ',' IN ',' || rule_codes || ',') > 0"
        params["code"] = rule_code
    with db.begin() as conn:
        stmt = sa.text(
            f"""INSERT INTO quarantine_events (dataset, row_key, version, event, event_at, actor, reason)
                SELECT dataset, row_key, version, 'ignored', :now, :actor, :reason
                FROM quarantine WHERE {cond}"""
        )
        upd = sa.text(
            f"""UPDATE quarantine SET status = 'ignored', status_at = :now, status_by = :actor,
                       status_reason = :reason WHERE {cond}"""
        )
        if row_keys:
            stmt = stmt.bindparams(sa.bindparam("keys", expanding=True))
            upd = upd.bindparams(sa.bindparam("keys", expanding=True))
        conn.execute(stmt, params)
        return conn.execute(upd, params).rowcount


# -- conservation -------------------------------------------------------------------------------


def conservation(db: StagingDB, datasets=ORDER) -> pd.DataFrame:
    """Per dataset: every landed row and every version accounted for, in counts and hours.

    Columns: dataset, rows_read, rows_landed (raw rows held, plus those purged by retention),
    versions, pending, valid, quarantined, superseded,
    not_postable, validated_rows, quarantine_rows, hours_total, landing_ok, states_ok, ok.
    """
    rows = []
    with db.engine.connect() as conn:
        for name in datasets:
            ds = DATASETS[name]
            stg = ds.versions_table
            hours = "hours" if name == "time_entries" else "CAST(NULL AS NUMERIC)"
            states = read_frame(
                conn,
                f"SELECT state, COUNT(*) AS n, SUM({hours}) AS h FROM {stg} GROUP BY state",
            )
            counts = dict(zip(states["state"], states["n"], strict=True))
            hsum = dict(zip(states["state"], states["h"], strict=True))
            loads = read_frame(
                conn,
                """SELECT coalesce(SUM(rows_read), 0) AS r, coalesce(SUM(rows_new_version), 0) AS v,
                          coalesce(SUM(rows_unchanged + rows_stale), 0) AS u
                   FROM loads WHERE dataset = :d AND status = 'landed'""",
                {"d": name},
            ).iloc[0]
            landed = conn.execute(sa.text(f"SELECT COUNT(*) FROM {ds.landing_table}")).scalar_one()
            # Raw rows removed by retention were landed: their per-load counts stand in for them.
            landed += conn.execute(
                sa.text(
                    "SELECT coalesce(SUM(rows_purged), 0) FROM landing_purges WHERE dataset = :d"
                ),
                {"d": name},
            ).scalar_one()
            versions = int(states["n"].sum()) if len(states) else 0
            q_rows = conn.execute(
                sa.text(
                    f"""SELECT COUNT(*) FROM quarantine q JOIN {stg} s ON s.row_key = q.row_key
                        AND s.version = q.version WHERE q.dataset = :d
                        AND q.status IN ('open', 'ignored') AND s.state = 'quarantined'"""
                ),
                {"d": name},
            ).scalar_one()
            validated = None
            if name == "time_entries":
                validated = conn.execute(
                    sa.text("SELECT COUNT(*) FROM validated_time_entries")
                ).scalar_one()
            elif name in VALIDATED:
                validated = conn.execute(
                    sa.text(f"SELECT COUNT(*) FROM {VALIDATED[name]}")
                ).scalar_one()
            hours_total = sum((h for h in hsum.values() if h is not None), start=0)
            row = {
                "dataset": name,
                "rows_read": int(loads["r"]),
                "rows_landed": int(landed),
                "versions": versions,
                "pending": int(counts.get("pending", 0)),
                **{s: int(counts.get(s, 0)) for s in STATES},
                "validated_rows": validated,
                "quarantine_rows": int(q_rows),
                "hours_total": hours_total,
            }
            # Files: every row read is landed, and is a version or counted unchanged/stale.
            landing_ok = (
                row["rows_read"] == row["rows_landed"]
                and int(loads["v"]) == versions
                and int(loads["v"]) + int(loads["u"]) == row["rows_read"]
            )
            # States: every version settled in exactly one place, copies agreeing.
            states_ok = (
                row["pending"] == 0
                and sum(row[s] for s in STATES) == versions
                and row["quarantine_rows"] == row["quarantined"]
                and (validated is None or validated == row["valid"])
            )
            row["landing_ok"], row["states_ok"] = bool(landing_ok), bool(states_ok)
            ok = landing_ok and states_ok
            row["ok"] = bool(ok)
            rows.append(row)
    return pd.DataFrame(rows)
