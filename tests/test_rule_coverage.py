"""Every rule code fires in at least one test.

`test_contracts.py` walks the rules a finance user meets most; this file covers the rest of the
format, missing-value, key, duplicate and master-data rules of every dataset, one bad row each, and
`test_every_rule_code_is_exercised_by_a_test` keeps it that way for rules added later.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from staging_models.contracts import RULES
from staging_models.db import StagingDB
from staging_models.validation import conservation
from tests.support.deal_world import TEMPLATES, deal
from tests.support.expense_world import expense
from tests.support.staging_helpers import EMPLOYEES, PROJECTS, TASKS, World, entry

TESTS = Path(__file__).resolve().parent


def _employee(**kw: str) -> dict[str, str]:
    return {**EMPLOYEES[0], "employee_id": "EX", **kw}


def _project(**kw: str) -> dict[str, str]:
    return {**PROJECTS[0], "project_code": "PX", **kw}


def _task(**kw: str) -> dict[str, str]:
    return {**TASKS[0], "task_code": "TX", **kw}


def _rate_card(**kw: str) -> dict[str, str]:
    base = dict(
        project_code="P5",
        employee_id="E2",
        role="",
        bill_rate="120.00",
        currency="EUR",
        valid_from="2026-01-01",
        valid_to="",
    )
    return {**base, **kw}


def _invoice(**kw: str) -> dict[str, str]:
    base = dict(
        invoice_id="IX",
        project_code="P1",
        customer_id="C1",
        currency="USD",
        issue_date="2026-11-10",
        due_date="2026-12-10",
        status="released",
        line_no="1",
        line_kind="milestone",
        description="Milestone 1",
        quantity="1",
        unit_price="5000.00",
        amount="5000.00",
        entry_ids="",
        updated_at="2026-11-10T00:00:00Z",
    )
    return {**base, **kw}


def _milestone(**kw: str) -> dict[str, str]:
    base = dict(
        project_code="P1",
        milestone_id="M1",
        description="Design accepted",
        amount="5000.00",
        accepted_on="2026-11-10",
        updated_at="2026-11-10T00:00:00Z",
    )
    return {**base, **kw}


_FIXED = dict(recognition_method="fixed_fee", contract_value="10000.00", budget_hours="100")


def _fx_rate(**kw: str) -> dict[str, str]:
    base = dict(
        rate_date="2026-10-15",
        from_currency="EUR",
        to_currency="USD",
        rate="1.0834",
        source="ECB",
        updated_at="2026-10-15T16:00:00Z",
    )
    return {**base, **kw}


def _template(**kw: str) -> dict[str, str]:
    return {**TEMPLATES[0], "task_code": "TX", **kw}


BUILDERS = {
    "crm_deals": lambda **kw: deal(**{"deal_id": "DX", **kw}),
    "project_templates": _template,
    "time_entries": lambda **kw: entry(**{"entry_id": "BAD", **kw}),
    "employees": _employee,
    "projects": _project,
    "project_tasks": _task,
    "rate_cards": _rate_card,
    "invoices": _invoice,
    "expenses": lambda **kw: expense(**{"expense_id": "XB", **kw}),
    "milestones": _milestone,
    "fx_rates": _fx_rate,
}

# (rule code, dataset, the bad row's values); a row with `_twice` lands twice, the second time
# with those values (same key, other content, one file).
CASES: list[tuple[str, str, dict[str, str]]] = [
    ("TE_UPDATED_AT_FORMAT", "time_entries", dict(updated_at="yesterday")),
    ("TE_DELETED_FORMAT", "time_entries", dict(deleted="perhaps")),
    ("TE_EMPLOYEE_ID_MISSING", "time_entries", dict(employee_id="")),
    ("TE_TASK_CODE_MISSING", "time_entries", dict(task_code="")),
    ("TE_BILLABLE_MISSING", "time_entries", dict(billable="")),
    ("TE_CURRENCY_MISSING", "time_entries", dict(currency="")),
    ("TE_DURATION_SECONDS_FORMAT", "time_entries", dict(duration_seconds="1.5")),
    ("TE_SOURCE_AMOUNT_FORMAT", "time_entries", dict(source_amount="12.345")),
    ("TE_FIXED_AMOUNT_FORMAT", "time_entries", dict(fixed_amount="150 EUR")),
    # The PSA's own amount against rate x hours (the default entry: 7.5 h x 150.00 = 1125.00).
    ("TE_AMOUNT_MISMATCH", "time_entries", dict(source_amount="1124.99")),
    ("EMP_KEY_MISSING", "employees", dict(employee_id="")),
    ("EMP_COST_RATE_FORMAT", "employees", dict(cost_rate="eighty")),
    ("EMP_ACTIVE_FORMAT", "employees", dict(active="sometimes")),
    ("EMP_LEGAL_ENTITY_MISSING", "employees", dict(legal_entity="")),
    ("EMP_CURRENCY_INVALID", "employees", dict(currency="DOLLAR")),
    ("PRJ_KEY_MISSING", "projects", dict(project_code="")),
    ("PRJ_START_DATE_FORMAT", "projects", dict(start_date="01.01.2026")),
    ("PRJ_END_DATE_FORMAT", "projects", dict(end_date="2026-13-01")),
    ("PRJ_UPDATED_AT_FORMAT", "projects", dict(updated_at="2026-01-01 00:00")),
    ("PRJ_BILLING_HOLD_FORMAT", "projects", dict(billing_hold="maybe")),
    (
        "PRJ_BILLING_HOLD_SINCE_FORMAT",
        "projects",
        dict(billing_hold="true", billing_hold_since="01.12.2026"),
    ),
    ("PRJ_CUSTOMER_ID_MISSING", "projects", dict(customer_id="")),
    ("PRJ_LEGAL_ENTITY_MISSING", "projects", dict(legal_entity="")),
    ("PRJ_CURRENCY_MISSING", "projects", dict(currency="")),
    ("PRJ_STATUS_MISSING", "projects", dict(status="")),
    ("PRJ_STATUS_UNKNOWN", "projects", dict(status="paused")),
    ("PRJ_BILLING_METHOD_UNKNOWN", "projects", dict(billing_method="barter")),
    ("PRJ_DUPLICATE_CONFLICT", "projects", dict(_twice="1", project_name="Other name")),
    ("TASK_KEY_MISSING", "project_tasks", dict(task_code="")),
    ("TASK_BILLABLE_FORMAT", "project_tasks", dict(billable="ja")),
    ("TASK_DUPLICATE_CONFLICT", "project_tasks", dict(_twice="1", task_name="Other name")),
    ("RC_KEY_MISSING", "rate_cards", dict(project_code="")),
    ("RC_BILL_RATE_FORMAT", "rate_cards", dict(bill_rate="120 EUR")),
    ("RC_VALID_FROM_FORMAT", "rate_cards", dict(valid_from="1/1/2026")),
    ("RC_VALID_TO_FORMAT", "rate_cards", dict(valid_to="someday")),
    ("RC_BILL_RATE_MISSING", "rate_cards", dict(bill_rate="")),
    ("RC_CURRENCY_MISSING", "rate_cards", dict(currency="")),
    ("RC_CURRENCY_INVALID", "rate_cards", dict(currency="EURO")),
    ("RC_RATE_NEGATIVE", "rate_cards", dict(bill_rate="-120.00")),
    ("RC_UNKNOWN_PROJECT", "rate_cards", dict(project_code="P404")),
    ("RC_DUPLICATE_CONFLICT", "rate_cards", dict(_twice="1", bill_rate="130.00")),
    ("INV_KEY_MISSING", "invoices", dict(invoice_id="")),
    ("INV_ISSUE_DATE_FORMAT", "invoices", dict(issue_date="10 Nov 2026")),
    ("INV_DUE_DATE_FORMAT", "invoices", dict(due_date="2026/12/10")),
    ("INV_LINE_NO_FORMAT", "invoices", dict(line_no="one")),
    ("INV_QUANTITY_FORMAT", "invoices", dict(quantity="1 pc")),
    ("INV_UNIT_PRICE_FORMAT", "invoices", dict(unit_price="5.000,00")),
    ("INV_AMOUNT_FORMAT", "invoices", dict(amount="5000.001")),
    ("INV_UPDATED_AT_FORMAT", "invoices", dict(updated_at="now")),
    ("INV_PROJECT_CODE_MISSING", "invoices", dict(project_code="")),
    ("INV_CUSTOMER_ID_MISSING", "invoices", dict(customer_id="")),
    ("INV_CURRENCY_MISSING", "invoices", dict(currency="")),
    ("INV_ISSUE_DATE_MISSING", "invoices", dict(issue_date="")),
    ("INV_STATUS_MISSING", "invoices", dict(status="")),
    ("INV_LINE_KIND_MISSING", "invoices", dict(line_kind="")),
    ("INV_QUANTITY_MISSING", "invoices", dict(quantity="")),
    ("INV_UNIT_PRICE_MISSING", "invoices", dict(unit_price="")),
    ("INV_AMOUNT_MISSING", "invoices", dict(amount="")),
    ("INV_CURRENCY_INVALID", "invoices", dict(currency="US$")),
    ("INV_STATUS_UNKNOWN", "invoices", dict(status="sent")),
    ("INV_LINE_KIND_UNKNOWN", "invoices", dict(line_kind="travel")),
    ("INV_UNKNOWN_PROJECT", "invoices", dict(project_code="P404")),
    ("INV_DUPLICATE_CONFLICT", "invoices", dict(_twice="1", description="Other text")),
    ("EXP_KEY_MISSING", "expenses", dict(expense_id="")),
    ("EXP_TAX_AMOUNT_FORMAT", "expenses", dict(tax_amount="10 %")),
    ("EXP_BILLABLE_FORMAT", "expenses", dict(billable="rebill")),
    ("EXP_REIMBURSABLE_FORMAT", "expenses", dict(reimbursable="si")),
    ("EXP_MARKUP_PERCENT_FORMAT", "expenses", dict(markup_percent="10%")),
    ("EXP_APPROVED_AT_FORMAT", "expenses", dict(approved_at="2026-11-05 09:00")),
    ("EXP_UPDATED_AT_FORMAT", "expenses", dict(updated_at="today")),
    ("EXP_DELETED_FORMAT", "expenses", dict(deleted="gone")),
    ("EXP_EMPLOYEE_ID_MISSING", "expenses", dict(employee_id="")),
    ("EXP_PROJECT_CODE_MISSING", "expenses", dict(project_code="")),
    ("EXP_EXPENSE_DATE_MISSING", "expenses", dict(expense_date="")),
    ("EXP_CATEGORY_MISSING", "expenses", dict(category="")),
    ("EXP_AMOUNT_MISSING", "expenses", dict(amount="")),
    ("EXP_CURRENCY_MISSING", "expenses", dict(currency="")),
    ("EXP_BILLABLE_MISSING", "expenses", dict(billable="")),
    ("EXP_REIMBURSABLE_MISSING", "expenses", dict(reimbursable="")),
    ("EXP_APPROVED_AT_MISSING", "expenses", dict(approved_at="")),
    ("EXP_APPROVAL_STATUS_UNKNOWN", "expenses", dict(approval_status="paid")),
    ("EXP_CURRENCY_INVALID", "expenses", dict(currency="US$")),
    ("EXP_FUTURE_DATE", "expenses", dict(expense_date="2026-12-24")),
    ("EXP_UNKNOWN_EMPLOYEE", "expenses", dict(employee_id="E404")),
    ("EXP_UNKNOWN_PROJECT", "expenses", dict(project_code="P404")),
    ("EXP_LEGAL_ENTITY_MISMATCH", "expenses", dict(employee_id="E2")),
    ("EXP_DUPLICATE_CONFLICT", "expenses", dict(_twice="1", description="Other text")),
    # Revenue recognition (issue 17)
    ("PRJ_CONTRACT_VALUE_FORMAT", "projects", dict(contract_value="10k")),
    ("PRJ_BUDGET_HOURS_FORMAT", "projects", dict(budget_hours="many")),
    ("PRJ_BUDGET_COST_FORMAT", "projects", dict(budget_cost="1.234")),
    ("PRJ_RECOGNITION_METHOD_UNKNOWN", "projects", dict(recognition_method="on_delivery")),
    ("PRJ_FIXED_FEE_NO_CONTRACT_VALUE", "projects", {**_FIXED, "contract_value": ""}),
    ("PRJ_FIXED_FEE_NO_BUDGET", "projects", {**_FIXED, "budget_hours": ""}),
    ("PRJ_BUDGET_NOT_POSITIVE", "projects", {**_FIXED, "budget_hours": "0"}),
    ("PRJ_CONTRACT_VALUE_NEGATIVE", "projects", {**_FIXED, "contract_value": "-1.00"}),
    ("MS_KEY_MISSING", "milestones", dict(milestone_id="")),
    ("MS_AMOUNT_FORMAT", "milestones", dict(amount="5.000,00")),
    ("MS_ACCEPTED_ON_FORMAT", "milestones", dict(accepted_on="10/11/2026")),
    ("MS_UPDATED_AT_FORMAT", "milestones", dict(updated_at="today")),
    ("MS_AMOUNT_MISSING", "milestones", dict(amount="")),
    ("MS_AMOUNT_NOT_POSITIVE", "milestones", dict(amount="0.00")),
    ("MS_UNKNOWN_PROJECT", "milestones", dict(project_code="P404")),
    # P1 recognizes time and materials
    ("MS_PROJECT_NOT_MILESTONE", "milestones", dict()),
    ("MS_ACCEPTED_BEFORE_START", "milestones", dict(accepted_on="2025-12-01")),
    ("MS_DUPLICATE_CONFLICT", "milestones", dict(_twice="1", amount="6000.00")),
    # Project templates and CRM deals (project set-up; the master-data rules of deals are
    # in test_crm_deals.py).
    ("TPL_KEY_MISSING", "project_templates", dict(template_code="")),
    ("TPL_BILLABLE_FORMAT", "project_templates", dict(billable="maybe")),
    ("TPL_TASK_NAME_MISSING", "project_templates", dict(task_name="")),
    ("TPL_DUPLICATE_CONFLICT", "project_templates", dict(_twice="1", task_name="Other")),
    ("DEAL_KEY_MISSING", "crm_deals", dict(deal_id="")),
    ("DEAL_WON_AT_FORMAT", "crm_deals", dict(won_at="last week")),
    ("DEAL_CONTRACT_VALUE_FORMAT", "crm_deals", dict(contract_value="12.345")),
    ("DEAL_BUDGET_HOURS_FORMAT", "crm_deals", dict(budget_hours="lots")),
    ("DEAL_START_DATE_FORMAT", "crm_deals", dict(start_date="01/12/2026")),
    ("DEAL_END_DATE_FORMAT", "crm_deals", dict(end_date="soon")),
    ("DEAL_UPDATED_AT_FORMAT", "crm_deals", dict(updated_at="now")),
    ("DEAL_CUSTOMER_ID_MISSING", "crm_deals", dict(customer_id="")),
    ("DEAL_CUSTOMER_NAME_MISSING", "crm_deals", dict(customer_name="")),
    ("DEAL_LEGAL_ENTITY_MISSING", "crm_deals", dict(legal_entity="")),
    ("DEAL_CURRENCY_MISSING", "crm_deals", dict(currency="")),
    ("DEAL_BILLING_METHOD_MISSING", "crm_deals", dict(billing_method="")),
    ("DEAL_START_DATE_MISSING", "crm_deals", dict(start_date="")),
    ("DEAL_TEMPLATE_CODE_MISSING", "crm_deals", dict(template_code="")),
    ("DEAL_CURRENCY_INVALID", "crm_deals", dict(currency="XXY")),
    ("DEAL_DUPLICATE_CONFLICT", "crm_deals", dict(_twice="1", budget_hours="10")),
    # Exchange rates (issue 21; the time entries' TE_FX_RATE_MISSING and
    # TE_TRANSFER_RATE_MISSING are in test_fx_rates.py)
    ("FX_KEY_MISSING", "fx_rates", dict(from_currency="")),
    ("FX_RATE_DATE_FORMAT", "fx_rates", dict(rate_date="15.10.2026")),  # unreadable date
    ("FX_RATE_FORMAT", "fx_rates", dict(rate="1.083412345")),  # 9 decimals: never rounded
    ("FX_UPDATED_AT_FORMAT", "fx_rates", dict(updated_at="today")),
    ("FX_RATE_MISSING", "fx_rates", dict(rate="")),
    ("FX_FROM_CURRENCY_INVALID", "fx_rates", dict(from_currency="EURO")),
    ("FX_TO_CURRENCY_INVALID", "fx_rates", dict(to_currency="usd")),
    ("FX_RATE_NOT_POSITIVE", "fx_rates", dict(rate="0")),
    ("FX_SAME_CURRENCY", "fx_rates", dict(to_currency="EUR")),
    ("FX_DUPLICATE_CONFLICT", "fx_rates", dict(_twice="1", rate="1.0900")),
]


@pytest.fixture
def world(duck_db: StagingDB, tmp_path: Path) -> World:
    return World(duck_db, tmp_path).master()


@pytest.mark.parametrize("code,dataset,values", CASES, ids=[c[0] for c in CASES])
def test_bad_row_is_quarantined_with_its_rule(
    world: World, code: str, dataset: str, values: dict[str, str]
) -> None:
    values = dict(values)
    twice = values.pop("_twice", None)
    build = BUILDERS[dataset]
    rows = [build(), build(**values)] if twice else [build(**values)]
    world.land(dataset, rows)
    world.validate()
    fired = world.db.query_df(
        "SELECT rule_codes, messages, source_file, status FROM quarantine WHERE dataset = :d",
        {"d": dataset},
    )
    codes = {c for text in fired["rule_codes"] for c in text.split(",")}
    assert code in codes, f"{code} did not fire; the quarantine holds {sorted(codes)}"
    assert (fired["status"] == "open").all()
    assert fired["messages"].str.len().gt(0).all()
    assert fired["source_file"].str.startswith(dataset).all()  # names the file the row came from
    df = conservation(world.db)
    assert df["ok"].all(), df.to_dict("records")


def test_every_rule_code_is_exercised_by_a_test() -> None:
    """A rule added without a test that makes it fire fails here, naming the rule."""
    text = "\n".join(
        p.read_text() for p in TESTS.glob("test_*.py") if p.name != "test_rule_coverage.py"
    )
    named = set(re.findall(r"\b[A-Z]+_[A-Z0-9_]+\b", text)) | {c[0] for c in CASES}
    every = {r.code for rules in RULES.values() for r in rules}
    assert every - named == set()
