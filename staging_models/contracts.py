"""The data contracts: every rule a landed row must pass, with a stable code and a message.

Each `Rule` holds
- `code`: stable, quoted in the quarantine, the workbook and the docs;
- `message`: a SQL expression giving the sentence a finance user reads, with the row's values;
- `violation`: a SQL predicate over the dataset's *candidate* row `x` (the typed row joined with
  the master data it refers to, see `staging_models.validation`) — this is what enforces the
  rule, set-based in the staging database;
- `check`: for rules that need no other table, the same rule as a vectorised pandas predicate;
  `pandera_schema(dataset)` turns them into a pandera `DataFrameSchema` (one named `Check` per
  rule code), which documents the contract, validates frames outside staging, and is tested to
  flag exactly the rows the SQL flags.

Cross-dataset rules (project open on the work date, rate resolution, ...) are SQL only: they are
joins, and the staging database does joins far better than a dataframe library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import pandas as pd
import pandera.pandas as pa

from connectors.sources.canonical import (
    APPROVAL_STATUSES,
    BILLING_METHODS,
    DATASETS,
    INVOICE_LINE_KINDS,
    INVOICE_STATUSES,
    PROJECT_STATUSES,
    RECOGNITION_METHODS,
)
from staging_models.currencies import ISO_4217, sql_list

Predicate = Callable[[pd.DataFrame], pd.Series]

PREFIX = {
    "time_entries": "TE",
    "employees": "EMP",
    "projects": "PRJ",
    "project_tasks": "TASK",
    "rate_cards": "RC",
    "invoices": "INV",
    "expenses": "EXP",
    "milestones": "MS",
    "assignments": "ASG",
    "project_templates": "TPL",
    "crm_deals": "DEAL",
    "fx_rates": "FX",
}

TYPE_HINT = {
    "date": "a date (YYYY-MM-DD)",
    "timestamptz": "a timestamp with UTC offset (e.g. 2026-11-02T09:15:00+01:00)",
    "bool": "true or false",
    "int": "a whole number",
    "hours": "a number of hours with at most 4 decimals",
    "rate": "an amount with at most 4 decimals",
    "qty": "a quantity with at most 4 decimals",
    "money": "an amount with at most 2 decimals",
    "fx_rate": "an exchange rate with at most 8 decimals",
}


@dataclass(frozen=True)
class Rule:
    code: str
    dataset: str
    message: str  # SQL text expression over x
    violation: str  # SQL predicate over x
    check: Predicate | None = None  # pandas: True where the row VIOLATES the rule
    blocking: bool = True  # a violation stops the row from posting (all rules today)


def _num(df: pd.DataFrame, col: str) -> pd.Series:
    """A decimal/None column as floats with NaN (comparisons against 0 and 24 are exact)."""
    return pd.to_numeric(df[col], errors="coerce")


def _date(df: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_datetime(df[col], errors="coerce")


def v(col: str) -> str:
    """A candidate value as text for messages: `'7.5000'` or `(empty)`."""
    return f"coalesce('''' || CAST(x.{col} AS VARCHAR) || '''', '(empty)')"


def _in(col: str, values) -> str:
    return f"x.{col} IN {sql_list(tuple(values))}"


def _generated_rules(dataset: str) -> list[Rule]:
    """Format and missing-value rules, derived from the canonical column specs."""
    ds = DATASETS[dataset]
    p = PREFIX[dataset]
    rules: list[Rule] = []
    for c in ds.columns:
        if c.type != "text":
            rules.append(
                Rule(
                    f"{p}_{c.name.upper()}_FORMAT",
                    dataset,
                    f"'{c.name} ' || coalesce('''' || x.raw_{c.name} || '''', '') "
                    f"|| ' is not {TYPE_HINT[c.type]}'",
                    f"position(',{c.name},' IN ',' || coalesce(x.type_errors, '') || ',') > 0",
                    lambda df, n=c.name: ("," + df["type_errors"].fillna("") + ",").str.contains(
                        f",{n},", regex=False
                    ),
                )
            )
    return rules


def _missing(dataset: str, col: str, label: str | None = None) -> Rule:
    p = PREFIX[dataset]
    raw = f"raw_{col}" if DATASETS[dataset].column(col).type != "text" else col
    return Rule(
        f"{p}_{col.upper()}_MISSING",
        dataset,
        f"'{label or col} is empty'",
        f"x.{raw} IS NULL",
        lambda df, raw=raw: df[raw].isna(),
    )


def _key_missing(dataset: str, label: str) -> Rule:
    return Rule(
        f"{PREFIX[dataset]}_KEY_MISSING",
        dataset,
        f"'the row has no {label}: it cannot be tracked or corrected later'",
        "x.key_missing",
        lambda df: df["key_missing"].astype(bool),
    )


def _dup_conflict(dataset: str, label: str) -> Rule:
    return Rule(
        f"{PREFIX[dataset]}_DUPLICATE_CONFLICT",
        dataset,
        f"'{label} ' || x.row_key || ' appears more than once in the same file with different content'",
        "x.dup_conflict",
    )


def _rate_negative(dataset: str) -> Rule:
    return Rule(
        f"{PREFIX[dataset]}_RATE_NEGATIVE",
        dataset,
        "'bill rate ' || " + v("bill_rate") + " || ' is negative'",
        "x.bill_rate < 0",
        lambda df: _num(df, "bill_rate") < 0,
    )


def _currency(dataset: str, col: str = "currency") -> Rule:
    return Rule(
        f"{PREFIX[dataset]}_{col.upper()}_INVALID",
        dataset,
        f"'{col} ' || {v(col)} || ' is not an ISO 4217 currency code'",
        f"x.{col} IS NOT NULL AND x.{col} NOT IN {sql_list(ISO_4217)}",
        lambda df, c=col: df[c].notna() & ~df[c].isin(ISO_4217),
    )


def _allowed(dataset: str, col: str, values: tuple[str, ...], code: str | None = None) -> Rule:
    return Rule(
        code or f"{PREFIX[dataset]}_{col.upper()}_UNKNOWN",
        dataset,
        f"'{col} ' || {v(col)} || ' is not one of {', '.join(values)}'",
        f"x.{col} IS NOT NULL AND NOT ({_in(col, values)})",
        lambda df, c=col, vals=values: df[c].notna() & ~df[c].isin(vals),
    )


def _unknown_project(dataset: str) -> Rule:
    return Rule(
        f"{PREFIX[dataset]}_UNKNOWN_PROJECT",
        dataset,
        "'project ' || " + v("project_code") + " || ' is not in the project master data'",
        "x.project_code IS NOT NULL AND NOT x.prj_found",
    )


def _project_currency(dataset: str) -> Rule:
    return Rule(
        f"{PREFIX[dataset]}_CURRENCY_MISMATCH",
        dataset,
        "'currency ' || x.currency || ' differs from project ' || x.project_code "
        "|| '''s currency ' || x.prj_currency",
        "x.currency <> x.prj_currency",
    )


# -- time entries -----------------------------------------------------------------------------

TIME_ENTRY_RULES: list[Rule] = [
    _key_missing("time_entries", "entry_id"),
    *_generated_rules("time_entries"),
    *(
        _missing("time_entries", c)
        for c in (
            "employee_id",
            "project_code",
            "task_code",
            "work_date",
            "hours",
            "billable",
            "currency",
        )
    ),
    _missing("time_entries", "approved_at", "approved_at (approval timestamp)"),
    _allowed("time_entries", "approval_status", APPROVAL_STATUSES),
    _currency("time_entries"),
    Rule(
        "TE_HOURS_NOT_POSITIVE",
        "time_entries",
        "'hours ' || " + v("hours") + " || ' must be greater than 0'",
        "x.hours <= 0",
        lambda df: _num(df, "hours") <= 0,
    ),
    Rule(
        "TE_HOURS_OVER_24",
        "time_entries",
        "'hours ' || " + v("hours") + " || ' exceed the 24 hours of a day'",
        "x.hours > 24",
        lambda df: _num(df, "hours") > 24,
    ),
    Rule(
        "TE_DAY_OVER_24",
        "time_entries",
        "'employee ' || x.employee_id || ' has ' || CAST(x.day_hours AS VARCHAR) "
        "|| ' approved hours on ' || CAST(x.work_date AS VARCHAR) || ', more than 24'",
        "x.day_hours > 24",
    ),
    Rule(
        "TE_APPROVED_BEFORE_WORK",
        "time_entries",
        "'approved on ' || substr(trim(x.raw_approved_at), 1, 10) || ', the date of ' "
        "|| trim(x.raw_approved_at) || ' at the UTC offset written with it, before the work date ' "
        "|| CAST(x.work_date AS VARCHAR)",
        # The work date is a local date; so is the date part of a timestamp as written, at the
        # offset written with it (the approver's own when the PSA writes local times; a
        # mapping writes naive times with its zone's offset): compare those, not UTC instants
        # (an evening approval in New York is the next day in UTC, a morning one in Tokyo the
        # previous one). A PSA that writes UTC (`...Z`) is judged on the UTC date.
        "x.approved_at IS NOT NULL AND CAST(substr(trim(x.raw_approved_at), 1, 10) AS DATE) < x.work_date",
    ),
    Rule(
        "TE_FUTURE_DATE",
        "time_entries",
        "'work date ' || CAST(x.work_date AS VARCHAR) || ' is in the future'",
        "x.work_date > x.latest_today",
    ),
    Rule(
        "TE_UNKNOWN_EMPLOYEE",
        "time_entries",
        "'employee ' || " + v("employee_id") + " || ' is not in the employee master data'",
        "x.employee_id IS NOT NULL AND NOT x.emp_found",
    ),
    _unknown_project("time_entries"),
    Rule(
        "TE_PROJECT_NOT_VALID",
        "time_entries",
        "'project ' || x.project_code || ' is itself quarantined; fix the project first'",
        "x.prj_found AND x.prj_state <> 'valid'",
    ),
    Rule(
        "TE_PROJECT_CLOSED",
        "time_entries",
        "'project ' || x.project_code || ' is closed'",
        "x.prj_status = 'closed'",
    ),
    Rule(
        "TE_PROJECT_ON_HOLD",
        "time_entries",
        "'project ' || x.project_code || ' is on hold'",
        "x.prj_status = 'on_hold'",
    ),
    Rule(
        "TE_OUTSIDE_PROJECT_DATES",
        "time_entries",
        "'work date ' || CAST(x.work_date AS VARCHAR) || ' is outside project ' || x.project_code "
        "|| ' (' || coalesce(CAST(x.prj_start AS VARCHAR), '…') || ' to ' "
        "|| coalesce(CAST(x.prj_end AS VARCHAR), '…') || ')'",
        "x.work_date < x.prj_start OR x.work_date > x.prj_end",
    ),
    Rule(
        "TE_LEGAL_ENTITY_MISMATCH",
        "time_entries",
        "'employee ' || x.employee_id || ' belongs to ' || x.emp_legal_entity "
        "|| ' but project ' || x.project_code || ' to ' || x.prj_legal_entity",
        # Under STAGEPOST_INTERCOMPANY_POLICY=intercompany such an entry posts with an
        # intercompany pair instead (docs/intercompany.md).
        "x.emp_legal_entity <> x.prj_legal_entity AND NOT x.ic_policy",
    ),
    Rule(
        "TE_TRANSFER_RATE_MISSING",
        "time_entries",
        "'intercompany: no transfer rate for employee ' || x.employee_id || ' of ' "
        "|| x.emp_legal_entity || ' on project ' || x.project_code || ' of ' "
        "|| x.prj_legal_entity || ' (' || CASE WHEN x.emp_cost_rate IS NULL "
        "THEN 'the employee has no cost_rate' ELSE 'the transfer rate card has no rate for role ' "
        "|| coalesce(x.emp_role, '(none)') END || ')'",
        "x.ic_entry AND x.ic_transfer_rate IS NULL",
    ),
    Rule(
        "TE_FX_RATE_MISSING",
        "time_entries",
        "'intercompany: no exchange rate ' || x.emp_currency || ' -> ' || x.prj_currency "
        "|| ' (nor its inverse) for ' || CAST(x.ic_ref_date AS VARCHAR) || ' (' || x.ic_fx_rule "
        "|| ' of work date ' || CAST(x.work_date AS VARCHAR) || ') or up to ' "
        "|| CAST(x.ic_fx_max_age AS VARCHAR) || ' days before it in fx_rates'",
        "x.ic_needs_fx AND x.ic_fx_rate IS NULL",
    ),
    Rule(
        "TE_UNKNOWN_TASK",
        "time_entries",
        "'task ' || " + v("task_code") + " || ' does not belong to project ' || x.project_code",
        "x.prj_found AND x.task_code IS NOT NULL AND NOT x.task_found",
    ),
    _project_currency("time_entries"),
    _rate_negative("time_entries"),
    Rule(
        "TE_RATE_MISSING",
        "time_entries",
        "'no bill rate: the entry has none and no rate card of project ' || x.project_code "
        "|| ' covers ' || coalesce(x.employee_id, '?') || ' (role ' || coalesce(x.emp_role, '?') "
        "|| ') on ' || CAST(x.work_date AS VARCHAR)",
        "x.billable AND x.bill_rate IS NULL AND x.raw_bill_rate IS NULL AND x.fixed_amount IS NULL "
        "AND x.rc_rate IS NULL AND x.prj_found AND x.work_date IS NOT NULL",
    ),
    Rule(
        "TE_BILLABLE_NOT_ALLOWED",
        "time_entries",
        "'billable time on a non-billable ' || CASE WHEN x.prj_billing = 'non_billable' "
        "THEN 'project ' || x.project_code ELSE 'task ' || x.task_code END",
        "x.billable AND (x.prj_billing = 'non_billable' OR x.task_billable = FALSE)",
    ),
    Rule(
        "TE_AMOUNT_MISMATCH",
        "time_entries",
        "'the PSA''s own amount ' || CAST(x.source_amount AS VARCHAR) || ' differs from ' "
        "|| CASE WHEN x.fixed_amount IS NOT NULL THEN 'the fixed price ' "
        "ELSE 'rate x hours = ' END || CAST(x.calc_amount AS VARCHAR)",
        "x.source_amount IS NOT NULL AND x.calc_amount IS NOT NULL "
        "AND x.source_amount <> x.calc_amount",
    ),
    _dup_conflict("time_entries", "entry_id"),
]

# -- master data --------------------------------------------------------------------------------

EMPLOYEE_RULES: list[Rule] = [
    _key_missing("employees", "employee_id"),
    *_generated_rules("employees"),
    _missing("employees", "legal_entity"),
    _currency("employees"),
    _dup_conflict("employees", "employee_id"),
]

#: A project's recognition method is its own, else its billing method (docs/revenue.md).
#: A project recognized as a fixed fee: said so, or billed as one with any revenue figure set.
#: A fixed-fee project without any (every export before issue 17) is left out of revenue
#: recognition rather than quarantined: its time still posts.
FIXED_FEE = (
    "(x.recognition_method = 'fixed_fee' OR (x.recognition_method IS NULL "
    "AND x.billing_method = 'fixed_fee' AND (x.contract_value IS NOT NULL "
    "OR x.budget_hours IS NOT NULL OR x.budget_cost IS NOT NULL)))"
)


def _fixed_fee(df: pd.DataFrame) -> pd.Series:
    figures = df["contract_value"].notna() | df["budget_hours"].notna() | df["budget_cost"].notna()
    own = df["recognition_method"]
    return (own == "fixed_fee") | (own.isna() & (df["billing_method"] == "fixed_fee") & figures)


#: What revenue recognition needs from a project (issue 17).
PROJECT_REVENUE_RULES: list[Rule] = [
    _allowed("projects", "recognition_method", RECOGNITION_METHODS),
    Rule(
        "PRJ_FIXED_FEE_NO_CONTRACT_VALUE",
        "projects",
        "'a fixed-fee project needs its contract value (contract_value)'",
        f"{FIXED_FEE} AND x.contract_value IS NULL",
        lambda df: _fixed_fee(df) & df["contract_value"].isna(),
    ),
    Rule(
        "PRJ_FIXED_FEE_NO_BUDGET",
        "projects",
        "'a fixed-fee project needs a budget (budget_hours or budget_cost) to measure progress'",
        f"{FIXED_FEE} AND x.budget_hours IS NULL AND x.budget_cost IS NULL",
        lambda df: _fixed_fee(df) & df["budget_hours"].isna() & df["budget_cost"].isna(),
    ),
    Rule(
        "PRJ_BUDGET_NOT_POSITIVE",
        "projects",
        "'budget ' || coalesce(CAST(x.budget_hours AS VARCHAR) || ' h', "
        "CAST(x.budget_cost AS VARCHAR)) || ' must be greater than 0'",
        "x.budget_hours <= 0 OR x.budget_cost <= 0",
        lambda df: (_num(df, "budget_hours") <= 0) | (_num(df, "budget_cost") <= 0),
    ),
    Rule(
        "PRJ_CONTRACT_VALUE_NEGATIVE",
        "projects",
        "'contract value ' || " + v("contract_value") + " || ' is negative'",
        "x.contract_value < 0",
        lambda df: _num(df, "contract_value") < 0,
    ),
]

#: The part of a project's manager e-mail after its first @.
_DOMAIN = "substr(x.manager_email, position('@' IN x.manager_email) + 1)"

PROJECT_RULES: list[Rule] = [
    _key_missing("projects", "project_code"),
    *_generated_rules("projects"),
    *(_missing("projects", c) for c in ("customer_id", "legal_entity", "currency", "status")),
    _currency("projects"),
    _allowed("projects", "status", PROJECT_STATUSES),
    _allowed("projects", "billing_method", BILLING_METHODS),
    Rule(
        "PRJ_DATES_INVERTED",
        "projects",
        "'start date ' || CAST(x.start_date AS VARCHAR) || ' is after end date ' "
        "|| CAST(x.end_date AS VARCHAR)",
        "x.start_date > x.end_date",
        lambda df: (
            df["start_date"].notna() & df["end_date"].notna() & (df["start_date"] > df["end_date"])
        ),
    ),
    Rule(  # the digest mails the project's manager there (finance desk)
        "PRJ_MANAGER_EMAIL_INVALID",
        "projects",
        "'manager e-mail ' || " + v("manager_email") + " || ' is not an e-mail address'",
        # One @ not first, no space, a dot inside the domain (no % in the SQL: psycopg)
        "x.manager_email IS NOT NULL AND (position(' ' IN x.manager_email) > 0 "
        "OR position('@' IN x.manager_email) < 2 "
        "OR length(x.manager_email) - length(replace(x.manager_email, '@', '')) <> 1 "
        f"OR position('.' IN substr({_DOMAIN}, 2, greatest(length({_DOMAIN}) - 2, 0))) = 0)",
        lambda df: (
            df["manager_email"].notna()
            & ~df["manager_email"].fillna("").str.fullmatch(r"[^ @]+@[^ @]+\.[^ @]+")
        ),
    ),
    *PROJECT_REVENUE_RULES,
    _dup_conflict("projects", "project_code"),
]

TASK_RULES: list[Rule] = [
    _key_missing("project_tasks", "project_code and task_code"),
    *_generated_rules("project_tasks"),
    Rule(
        "TASK_UNKNOWN_PROJECT",
        "project_tasks",
        "'project ' || " + v("project_code") + " || ' is not in the project master data'",
        "NOT x.prj_found",
    ),
    _dup_conflict("project_tasks", "task"),
]

RATE_CARD_RULES: list[Rule] = [
    _key_missing("rate_cards", "project_code and valid_from"),
    *_generated_rules("rate_cards"),
    _missing("rate_cards", "bill_rate"),
    _missing("rate_cards", "currency"),
    _currency("rate_cards"),
    _rate_negative("rate_cards"),
    Rule(
        "RC_DATES_INVERTED",
        "rate_cards",
        "'valid_from ' || CAST(x.valid_from AS VARCHAR) || ' is after valid_to ' "
        "|| CAST(x.valid_to AS VARCHAR)",
        "x.valid_from > x.valid_to",
        lambda df: (
            df["valid_from"].notna() & df["valid_to"].notna() & (df["valid_from"] > df["valid_to"])
        ),
    ),
    _unknown_project("rate_cards"),
    _project_currency("rate_cards"),
    Rule(
        "RC_OVERLAP",
        "rate_cards",
        "'overlaps another rate card of project ' || x.project_code || ' for the same '"
        " || CASE WHEN x.employee_id IS NOT NULL THEN 'employee ' || x.employee_id"
        " WHEN x.role IS NOT NULL THEN 'role ' || x.role ELSE 'default rate' END",
        "x.overlaps",
    ),
    _dup_conflict("rate_cards", "rate card"),
]

INVOICE_RULES: list[Rule] = [
    _key_missing("invoices", "invoice_id and line_no"),
    *_generated_rules("invoices"),
    *(
        _missing("invoices", c)
        for c in ("project_code", "customer_id", "currency", "issue_date", "status", "line_kind")
    ),
    *(_missing("invoices", c) for c in ("quantity", "unit_price", "amount")),
    _currency("invoices"),
    _allowed("invoices", "status", INVOICE_STATUSES),
    _allowed("invoices", "line_kind", INVOICE_LINE_KINDS),
    Rule(
        "INV_AMOUNT_MISMATCH",
        "invoices",
        "'amount ' || " + v("amount") + " || ' is not quantity × unit price = ' "
        "|| CAST(ROUND(x.quantity * x.unit_price, 2) AS VARCHAR)",
        "x.amount <> ROUND(x.quantity * x.unit_price, 2)",
    ),
    Rule(
        "INV_DUE_BEFORE_ISSUE",
        "invoices",
        "'due date ' || CAST(x.due_date AS VARCHAR) || ' is before issue date ' "
        "|| CAST(x.issue_date AS VARCHAR)",
        "x.due_date < x.issue_date",
        lambda df: (
            df["due_date"].notna() & df["issue_date"].notna() & (df["due_date"] < df["issue_date"])
        ),
    ),
    _unknown_project("invoices"),
    _project_currency("invoices"),
    Rule(
        "INV_CUSTOMER_MISMATCH",
        "invoices",
        "'customer ' || x.customer_id || ' differs from project ' || x.project_code "
        "|| '''s customer ' || x.prj_customer",
        "x.customer_id <> x.prj_customer",
    ),
    Rule(
        "INV_TIME_LINE_WITHOUT_ENTRIES",
        "invoices",
        "'a time line must list the time entries it bills (entry_ids)'",
        "x.line_kind = 'time' AND x.entry_ids IS NULL",
    ),
    Rule(
        "INV_ENTRY_UNKNOWN",
        "invoices",
        "CAST(x.n_unknown AS VARCHAR) || ' referenced time entr(ies) do not exist: ' || x.unknown_ids",
        "x.n_unknown > 0",
    ),
    Rule(
        "INV_ENTRY_NOT_APPROVED",
        "invoices",
        "CAST(x.n_unapproved AS VARCHAR) || ' referenced time entr(ies) are not approved: ' "
        "|| x.unapproved_ids",
        "x.n_unapproved > 0",
    ),
    Rule(
        "INV_ENTRY_OTHER_PROJECT",
        "invoices",
        "CAST(x.n_other_project AS VARCHAR) || ' referenced time entr(ies) belong to another project: ' "
        "|| x.other_project_ids",
        "x.n_other_project > 0",
    ),
    _dup_conflict("invoices", "invoice line"),
]

# -- expenses -----------------------------------------------------------------------------------

EXPENSE_RULES: list[Rule] = [
    _key_missing("expenses", "expense_id"),
    *_generated_rules("expenses"),
    *(
        _missing("expenses", c)
        for c in (
            "employee_id",
            "project_code",
            "expense_date",
            "category",
            "amount",
            "currency",
            "billable",
            "reimbursable",
        )
    ),
    _missing("expenses", "approved_at", "approved_at (approval timestamp)"),
    _allowed("expenses", "approval_status", APPROVAL_STATUSES),
    _currency("expenses"),
    Rule(  # the categories finance books: STAGEPOST_EXPENSE_CATEGORIES
        "EXP_CATEGORY_UNKNOWN",
        "expenses",
        "'category ' || " + v("category") + " || ' is not one of ' || x.known_categories",
        "x.category IS NOT NULL AND NOT x.category_known",
    ),
    Rule(  # to the cent: more decimals is EXP_AMOUNT_FORMAT (never rounded)
        "EXP_AMOUNT_NOT_POSITIVE",
        "expenses",
        "'amount ' || " + v("amount") + " || ' must be greater than 0'",
        "x.amount <= 0",
        lambda df: _num(df, "amount") <= 0,
    ),
    Rule(
        "EXP_TAX_OUT_OF_RANGE",
        "expenses",
        "'tax amount ' || "
        + v("tax_amount")
        + " || ' is not between 0 and the amount ' || "
        + v("amount"),
        "x.tax_amount < 0 OR x.tax_amount > x.amount",
        lambda df: (_num(df, "tax_amount") < 0) | (_num(df, "tax_amount") > _num(df, "amount")),
    ),
    Rule(
        "EXP_MARKUP_OUT_OF_RANGE",
        "expenses",
        "'markup ' || "
        + v("markup_percent")
        + " || ' percent is not between 0 and 1000'",  # no %: psycopg
        "x.markup_percent < 0 OR x.markup_percent > 1000",
        lambda df: (_num(df, "markup_percent") < 0) | (_num(df, "markup_percent") > 1000),
    ),
    Rule(  # STAGEPOST_EXPENSE_RECEIPT_REQUIRED_ABOVE
        "EXP_RECEIPT_MISSING",
        "expenses",
        "'amount ' || CAST(x.amount AS VARCHAR) || ' ' || x.currency "
        "|| ' is over ' || CAST(x.receipt_above AS VARCHAR) || ' and needs a receipt (receipt_ref)'",
        "x.amount > x.receipt_above AND x.receipt_ref IS NULL",
    ),
    Rule(
        "EXP_RECEIPT_DUPLICATE",
        "expenses",
        "'receipt ' || x.receipt_ref || ' is already claimed by expense ' || x.receipt_claimed_by",
        "x.receipt_claimed_by IS NOT NULL",
    ),
    Rule(
        "EXP_FUTURE_DATE",
        "expenses",
        "'expense date ' || CAST(x.expense_date AS VARCHAR) || ' is in the future'",
        "x.expense_date > x.latest_today",
    ),
    Rule(
        "EXP_UNKNOWN_EMPLOYEE",
        "expenses",
        "'employee ' || " + v("employee_id") + " || ' is not in the employee master data'",
        "x.employee_id IS NOT NULL AND NOT x.emp_found",
    ),
    _unknown_project("expenses"),
    Rule(
        "EXP_PROJECT_NOT_VALID",
        "expenses",
        "'project ' || x.project_code || ' is itself quarantined; fix the project first'",
        "x.prj_found AND x.prj_state <> 'valid'",
    ),
    Rule(
        "EXP_PROJECT_NOT_OPEN",
        "expenses",
        "'project ' || x.project_code || ' is ' || replace(x.prj_status, '_', ' ')",
        "x.prj_status IN ('closed', 'on_hold')",
    ),
    Rule(
        "EXP_OUTSIDE_PROJECT_DATES",
        "expenses",
        "'expense date ' || CAST(x.expense_date AS VARCHAR) || ' is outside project ' "
        "|| x.project_code || ' (' || coalesce(CAST(x.prj_start AS VARCHAR), '…') || ' to ' "
        "|| coalesce(CAST(x.prj_end AS VARCHAR), '…') || ')'",
        "x.expense_date < x.prj_start OR x.expense_date > x.prj_end",
    ),
    Rule(
        "EXP_LEGAL_ENTITY_MISMATCH",
        "expenses",
        "'employee ' || x.employee_id || ' belongs to ' || x.emp_legal_entity "
        "|| ' but project ' || x.project_code || ' to ' || x.prj_legal_entity",
        "x.emp_legal_entity <> x.prj_legal_entity",
    ),
    Rule(
        "EXP_UNKNOWN_TASK",
        "expenses",
        "'task ' || " + v("task_code") + " || ' does not belong to project ' || x.project_code",
        "x.prj_found AND x.task_code IS NOT NULL AND NOT x.task_found",
    ),
    _project_currency("expenses"),
    Rule(
        "EXP_BILLABLE_NOT_ALLOWED",
        "expenses",
        "'billable expense on non-billable project ' || x.project_code",
        "x.billable AND x.prj_billing = 'non_billable'",
    ),
    _dup_conflict("expenses", "expense_id"),
]

MILESTONE_RULES: list[Rule] = [
    _key_missing("milestones", "project_code and milestone_id"),
    *_generated_rules("milestones"),
    _missing("milestones", "amount"),
    Rule(
        "MS_AMOUNT_NOT_POSITIVE",
        "milestones",
        "'amount ' || " + v("amount") + " || ' must be greater than 0'",
        "x.amount <= 0",
        lambda df: _num(df, "amount") <= 0,
    ),
    _unknown_project("milestones"),
    Rule(
        "MS_PROJECT_NOT_MILESTONE",
        "milestones",
        "'project ' || x.project_code || ' recognizes revenue by ' || x.prj_method "
        "|| ', not by milestone'",
        "x.prj_found AND x.prj_method <> 'milestone'",
    ),
    Rule(
        "MS_ACCEPTED_BEFORE_START",
        "milestones",
        "'accepted on ' || CAST(x.accepted_on AS VARCHAR) || ', before project ' "
        "|| x.project_code || ' starts (' || CAST(x.prj_start AS VARCHAR) || ')'",
        "x.accepted_on < x.prj_start",
    ),
    _dup_conflict("milestones", "milestone"),
]

# -- resource plans (assignments) -------------------------------------------------------------

#: The most hours one assignment may plan for one person in one ISO week (an assignment over a
#: date range: this over 5 per working day on average). More is a typo, not a plan.
WEEK_MAX_PLANNED_HOURS = 80
#: A date range longer than this many days is refused: split it (each row is spread day by day).
MAX_RANGE_DAYS = 731


def _decimals_over(col: str, places: int) -> Predicate:
    """pandas: True where a decimal column has more than `places` decimals (exact, no floats)."""
    step = Decimal(1).scaleb(-places)

    def check(df: pd.DataFrame) -> pd.Series:
        return (
            df[col]
            .map(
                lambda d: (
                    d is not None
                    and not pd.isna(d)
                    and Decimal(str(d)) != Decimal(str(d)).quantize(step)
                )
            )
            .astype(bool)
        )

    return check


ASSIGNMENT_RULES: list[Rule] = [
    _key_missing("assignments", "assignment_id"),
    *_generated_rules("assignments"),
    *(_missing("assignments", c) for c in ("employee_id", "project_code", "planned_hours")),
    Rule(
        "ASG_PERIOD_MISSING",
        "assignments",
        "'no period: give week_start (a Monday), or start_date and end_date'",
        "x.raw_week_start IS NULL AND (x.raw_start_date IS NULL OR x.raw_end_date IS NULL)",
        lambda df: (
            df["raw_week_start"].isna() & (df["raw_start_date"].isna() | df["raw_end_date"].isna())
        ),
    ),
    Rule(
        "ASG_PERIOD_TWICE",
        "assignments",
        "'both week_start and a date range: give one of them'",
        "x.raw_week_start IS NOT NULL AND (x.raw_start_date IS NOT NULL OR x.raw_end_date IS NOT NULL)",
        lambda df: (
            df["raw_week_start"].notna()
            & (df["raw_start_date"].notna() | df["raw_end_date"].notna())
        ),
    ),
    Rule(
        "ASG_WEEK_NOT_MONDAY",
        "assignments",
        "'week_start ' || CAST(x.week_start AS VARCHAR) || ' is not a Monday (ISO weeks start on Monday)'",
        "extract(isodow FROM x.week_start) <> 1",
        lambda df: _date(df, "week_start").dt.dayofweek.ne(0) & _date(df, "week_start").notna(),
    ),
    Rule(
        "ASG_DATES_INVERTED",
        "assignments",
        "'end_date ' || CAST(x.end_date AS VARCHAR) || ' is before start_date ' "
        "|| CAST(x.start_date AS VARCHAR)",
        "x.end_date < x.start_date",
        lambda df: (
            df["start_date"].notna() & df["end_date"].notna() & (df["end_date"] < df["start_date"])
        ),
    ),
    Rule(
        "ASG_RANGE_TOO_LONG",
        "assignments",
        "'the range ' || CAST(x.start_date AS VARCHAR) || ' to ' || CAST(x.end_date AS VARCHAR) "
        f"|| ' is longer than {MAX_RANGE_DAYS} days: split it'",
        f"x.end_date - x.start_date >= {MAX_RANGE_DAYS}",
        lambda df: (
            (_date(df, "end_date") - _date(df, "start_date")).dt.days >= MAX_RANGE_DAYS
        ).fillna(False),
    ),
    Rule(
        "ASG_NO_WORKING_DAYS",
        "assignments",
        "'the range ' || CAST(x.start_date AS VARCHAR) || ' to ' || CAST(x.end_date AS VARCHAR) "
        "|| ' has no working day (Monday to Friday) to plan hours on'",
        "x.start_date <= x.end_date AND x.working_days = 0",
    ),
    Rule(
        "ASG_HOURS_NEGATIVE",
        "assignments",
        "'planned hours ' || " + v("planned_hours") + " || ' are negative'",
        "x.planned_hours < 0",
        lambda df: _num(df, "planned_hours") < 0,
    ),
    Rule(
        "ASG_HOURS_OVER_WEEK_MAX",
        "assignments",
        "'planned hours ' || " + v("planned_hours") + " || CASE WHEN x.week_start IS NOT NULL "
        f"THEN ' exceed {WEEK_MAX_PLANNED_HOURS} hours in one week' "
        "ELSE ' over ' || CAST(x.working_days AS VARCHAR) || ' working days exceed "
        f"{WEEK_MAX_PLANNED_HOURS // 5} hours a working day' END",
        f"(x.week_start IS NOT NULL AND x.planned_hours > {WEEK_MAX_PLANNED_HOURS}) "
        f"OR (x.working_days > 0 AND x.planned_hours * 5 > {WEEK_MAX_PLANNED_HOURS} * x.working_days)",
    ),
    _rate_negative("assignments"),
    Rule(
        "ASG_RATE_NOT_CENTS",
        "assignments",
        "'bill rate ' || " + v("bill_rate") + " || ' is not to the cent (2 decimals at most)'",
        "x.bill_rate <> ROUND(x.bill_rate, 2)",
        _decimals_over("bill_rate", 2),
    ),
    Rule(
        "ASG_UNKNOWN_EMPLOYEE",
        "assignments",
        "'employee ' || " + v("employee_id") + " || ' is not in the employee master data'",
        "x.employee_id IS NOT NULL AND NOT x.emp_found",
    ),
    _unknown_project("assignments"),
    Rule(
        "ASG_UNKNOWN_TASK",
        "assignments",
        "'task ' || " + v("task_code") + " || ' does not belong to project ' || x.project_code",
        "x.prj_found AND x.task_code IS NOT NULL AND NOT x.task_found",
    ),
    _dup_conflict("assignments", "assignment_id"),
]

# -- CRM deals and project templates (project set-up, `posting.deal_setup`) ----------------------

TEMPLATE_RULES: list[Rule] = [
    _key_missing("project_templates", "template_code and task_code"),
    *_generated_rules("project_templates"),
    _missing("project_templates", "task_name"),
    _dup_conflict("project_templates", "template task"),
]


def _changed(col: str, label: str, when: str = "TRUE") -> str:
    """Message part naming an immutable field that changed since set-up: `, currency EUR -> USD`."""
    return (
        f"CASE WHEN x.{col} <> x.set_{col} AND {when} THEN ', {label} ' "
        f"|| x.set_{col} || ' -> ' || x.{col} ELSE '' END"
    )


#: Set up already (the deal's project is in the ERP, or being created): what may not change.
#: Dates, budget, contract value, manager, name and billing method are updated instead.
_IMMUTABLE = (
    "x.set_currency IS NOT NULL AND (x.currency <> x.set_currency "
    "OR x.customer_id <> x.set_customer_id OR x.template_code <> x.set_template_code "
    "OR (x.legal_entity <> x.set_legal_entity AND x.time_posted))"
)

DEAL_RULES: list[Rule] = [
    _key_missing("crm_deals", "deal_id"),
    *_generated_rules("crm_deals"),
    *(
        _missing("crm_deals", c)
        for c in (
            "customer_id",
            "customer_name",
            "legal_entity",
            "currency",
            "billing_method",
            "start_date",
            "template_code",
        )
    ),
    _currency("crm_deals"),
    _allowed("crm_deals", "billing_method", BILLING_METHODS),
    Rule(
        "DEAL_END_BEFORE_START",
        "crm_deals",
        "'end date ' || CAST(x.end_date AS VARCHAR) || ' is before start date ' "
        "|| CAST(x.start_date AS VARCHAR)",
        "x.end_date < x.start_date",
        lambda df: (
            df["start_date"].notna() & df["end_date"].notna() & (df["end_date"] < df["start_date"])
        ),
    ),
    Rule(
        "DEAL_NEGATIVE_AMOUNT",
        "crm_deals",
        "'contract value ' || "
        + v("contract_value")
        + " || ' or budget hours ' || "
        + v("budget_hours")
        + " || ' is negative'",
        "x.contract_value < 0 OR x.budget_hours < 0",
        lambda df: (_num(df, "contract_value") < 0) | (_num(df, "budget_hours") < 0),
    ),
    Rule(
        "DEAL_UNKNOWN_LEGAL_ENTITY",
        "crm_deals",
        "'legal entity ' || " + v("legal_entity") + " || ' has no employees or projects in "
        "staging (unknown legal entity)'",
        "x.legal_entity IS NOT NULL AND NOT x.le_found",
    ),
    Rule(
        "DEAL_CURRENCY_NOT_OF_ENTITY",
        "crm_deals",
        "'currency ' || x.currency || ' is not a currency of legal entity ' || x.legal_entity "
        "|| ' (its employees and projects use ' || x.le_currencies || ')'",
        "x.le_found AND x.currency IS NOT NULL AND NOT x.le_currency_found",
    ),
    Rule(
        "DEAL_UNKNOWN_TEMPLATE",
        "crm_deals",
        "'project template ' || " + v("template_code") + " || ' is not in the project templates'",
        "x.template_code IS NOT NULL AND NOT x.tpl_found",
    ),
    Rule(
        "DEAL_PROJECT_CODE_TAKEN",
        "crm_deals",
        "'project ' || x.row_key || ' exists already in the PSA and was not set up from this deal'",
        "x.set_currency IS NULL AND x.prj_found",
    ),
    Rule(
        "DEAL_IMMUTABLE_CHANGED",
        "crm_deals",
        "'project ' || x.row_key || ' is set up already; this may no longer change: ' || substr("
        + " || ".join(
            (
                _changed("currency", "currency"),
                _changed("customer_id", "customer"),
                _changed("template_code", "template"),
                _changed("legal_entity", "legal entity (time is posted)", "x.time_posted"),
            )
        )
        + ", 3)",
        _IMMUTABLE,
    ),
    _dup_conflict("crm_deals", "deal"),
]

# -- exchange rates (issue 21, docs/intercompany.md) --------------------------------------------

FX_RATE_RULES: list[Rule] = [
    _key_missing("fx_rates", "readable rate_date, from_currency and to_currency"),
    *_generated_rules("fx_rates"),
    _missing("fx_rates", "rate"),
    _currency("fx_rates", "from_currency"),
    _currency("fx_rates", "to_currency"),
    Rule(
        "FX_RATE_NOT_POSITIVE",
        "fx_rates",
        "'rate ' || " + v("rate") + " || ' must be greater than 0'",
        "x.rate <= 0",
        lambda df: _num(df, "rate") <= 0,
    ),
    Rule(
        "FX_SAME_CURRENCY",
        "fx_rates",
        "'from_currency and to_currency are both ' || x.from_currency",
        "x.from_currency = x.to_currency",
        lambda df: df["from_currency"].notna() & (df["from_currency"] == df["to_currency"]),
    ),
    _dup_conflict("fx_rates", "rate of (rate_date, from_currency, to_currency)"),
]

RULES: dict[str, list[Rule]] = {
    "time_entries": TIME_ENTRY_RULES,
    "employees": EMPLOYEE_RULES,
    "projects": PROJECT_RULES,
    "project_tasks": TASK_RULES,
    "rate_cards": RATE_CARD_RULES,
    "invoices": INVOICE_RULES,
    "expenses": EXPENSE_RULES,
    "milestones": MILESTONE_RULES,
    "assignments": ASSIGNMENT_RULES,
    "project_templates": TEMPLATE_RULES,
    "crm_deals": DEAL_RULES,
    "fx_rates": FX_RATE_RULES,
}


def rule(code: str) -> Rule:
    for rules in RULES.values():
        for r in rules:
            if r.code == code:
                return r
    raise KeyError(code)


def _assert_unique_codes() -> None:
    codes = [r.code for rules in RULES.values() for r in rules]
    dupes = {c for c in codes if codes.count(c) > 1}
    if dupes:
        raise RuntimeError(f"duplicate rule codes: {sorted(dupes)}")


_assert_unique_codes()


def pandera_schema(dataset: str) -> pa.DataFrameSchema:
    """The row-level part of a dataset's contract as a pandera schema (one Check per rule code).

    Runs on a frame of the dataset's typed columns plus `type_errors`, `key_missing` and the
    `raw_*` text columns; each Check fails exactly on the rows its rule quarantines.
    """
    checks = [
        pa.Check(
            lambda df, f=r.check: ~f(df).astype(bool),
            name=r.code,
            error=r.code,
        )
        for r in RULES[dataset]
        if r.check is not None
    ]
    return pa.DataFrameSchema(checks=checks, name=f"{dataset}_contract", strict=False, coerce=False)
