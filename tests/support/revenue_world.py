"""The worked examples of docs/revenue.md as a PSA world: one project per recognition method.

Legal entity US01, USD, every project starting 2026-09-01:

| project | method | contract | budget |
|---|---|---|---|
| TM | time_and_materials | | |
| FF | fixed_fee (hours) | 12,000.00 | 70 h (raised to 100 h by `raise_budget`) |
| FC | fixed_fee (cost-to-cost) | 9,000.00 | cost 6,000.00 |
| MS | milestone | 30,000.00 | |
| NB | non_billable | | |

Employees: E1 (cost rate 80.00), E3 (cost rate 60.00).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from staging_models.db import StagingDB
from staging_models.revenue import compute_revenue
from tests.support.csvtools import te
from tests.support.staging_helpers import World

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

EMPLOYEES = [
    dict(
        employee_id=e,
        employee_name=n,
        legal_entity="US01",
        role=r,
        cost_rate=c,
        currency="USD",
        active="true",
    )
    for e, n, r, c in (("E1", "Ann Lee", "senior", "80.00"), ("E3", "Bo Kim", "junior", "60.00"))
]


def project(code: str, method: str, **kw: str) -> dict[str, str]:
    base = dict(
        project_code=code,
        project_name=f"Project {code}",
        customer_id="C1",
        customer_name="Acme",
        legal_entity="US01",
        currency="USD",
        billing_method=method,
        status="open",
        start_date="2026-09-01",
        end_date="",
        updated_at="2026-09-01T00:00:00Z",
        recognition_method="",
        contract_value="",
        budget_hours="",
        budget_cost="",
    )
    return {**base, **kw}


PROJECTS = [
    project("TM", "time_and_materials"),
    project("FF", "fixed_fee", contract_value="12000.00", budget_hours="70"),
    project("FC", "fixed_fee", contract_value="9000.00", budget_cost="6000.00"),
    project("MS", "milestone", contract_value="30000.00"),
    project("NB", "non_billable"),
]
TASKS = [
    dict(
        project_code=p, task_code="T1", task_name="Work", billable="false" if p == "NB" else "true"
    )
    for p in ("TM", "FF", "FC", "MS", "NB")
]


def entry(entry_id: str, project: str, day: str, hours: str, rate: str = "150.00", **kw) -> dict:
    return te(
        entry_id=entry_id,
        project_code=project,
        task_code="T1",
        work_date=day,
        hours=hours,
        bill_rate=rate if project != "NB" else "",
        billable="false" if project == "NB" else "true",
        approved_at=f"{day}T18:00:00+00:00",
        updated_at=f"{day}T18:00:00Z",
        **kw,
    )


#: September and October.
ENTRIES = [
    # TM: 8 h x 150.00 = 1,200.00 and 2.25 h x 133.33 = 299.9925 -> 299.99 (Sep); 7.5 h (Oct)
    entry("TM-1", "TM", "2026-09-10", "8.00"),
    entry("TM-2", "TM", "2026-09-11", "2.25", "133.33"),
    entry("TM-3", "TM", "2026-10-05", "7.50"),
    # FF: 25 h (Sep), 30 h (Oct)
    entry("FF-1", "FF", "2026-09-15", "10.00"),
    entry("FF-2", "FF", "2026-09-16", "15.00", employee_id="E3"),
    entry("FF-3", "FF", "2026-10-15", "12.00"),
    entry("FF-4", "FF", "2026-10-16", "18.00"),
    # FC: cost 10 h x 80.00 = 800.00 (Sep); 3.3333 h x 60.00 = 199.998 -> 200.00 (Oct)
    entry("FC-1", "FC", "2026-09-20", "10.00"),
    entry("FC-2", "FC", "2026-10-20", "3.3333", employee_id="E3"),
    entry("NB-1", "NB", "2026-09-20", "5.00"),
]

MILESTONES = [
    dict(
        project_code="MS",
        milestone_id=m,
        description=d,
        amount=a,
        accepted_on=on,
        updated_at="2026-11-01T00:00:00Z",
    )
    for m, d, a, on in (
        ("M1", "Design accepted", "5000.00", "2026-09-20"),
        ("M2", "Build accepted", "7500.00", "2026-10-31"),
        ("M3", "Go-live", "17500.00", ""),
    )
]


def invoice(invoice_id: str, project: str, day: str, amount: str, kind: str, entries: str = ""):
    return dict(
        invoice_id=invoice_id,
        project_code=project,
        customer_id="C1",
        currency="USD",
        issue_date=day,
        due_date="",
        status="released",
        line_no="1",
        line_kind=kind,
        description=f"{kind} {invoice_id}",
        quantity="1",
        unit_price=amount,
        amount=amount,
        entry_ids=entries,
        updated_at=f"{day}T00:00:00Z",
    )


#: TM's September time billed in October; FF billed 6,000.00 in September, ahead of progress.
INVOICES = [
    invoice("I-TM-1", "TM", "2026-10-02", "1499.99", "time", "TM-1;TM-2"),
    invoice("I-FF-1", "FF", "2026-09-30", "6000.00", "fixed_fee"),
]


class RevenueWorld(World):
    """The examples landed and validated on `db`; `revenue(as_of)` computes the table."""

    def __init__(self, db: StagingDB, folder: Path) -> None:
        super().__init__(db, folder)
        self.land("employees", EMPLOYEES)
        self.land("projects", PROJECTS)
        self.land("project_tasks", TASKS)
        self.land("milestones", MILESTONES)
        self.land("time_entries", ENTRIES)
        self.land("invoices", INVOICES)
        self.validate()

    def validate(self, now: datetime = NOW):
        return super().validate(now)

    def revenue(self, as_of: str) -> dict[tuple[str, str], dict]:
        compute_revenue(self.db, datetime.fromisoformat(as_of).date(), now=NOW)
        df = self.db.query_df("SELECT * FROM revenue_recognized ORDER BY project_code, period")
        return {(r["project_code"], r["period"]): r for r in df.to_dict("records")}

    def raise_budget(self, hours: str = "100") -> None:
        """FF's budget raised (a new version of the project)."""
        ff = project(
            "FF",
            "fixed_fee",
            contract_value="12000.00",
            budget_hours=hours,
            updated_at="2026-11-18T00:00:00Z",
        )
        self.land("projects", [p if p["project_code"] != "FF" else ff for p in PROJECTS])
        self.validate()

    def add_entries(self, *rows: dict) -> None:
        self.land("time_entries", list(rows))
        self.validate()


def money(text: str) -> Decimal:
    return Decimal(text)
