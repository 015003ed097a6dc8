"""A PSA world of two legal entities for intercompany time and exchange rates (docs/intercompany.md).

| legal entity | currency | employees | projects |
|---|---|---|---|
| DE01 | EUR | XDE (consultant, cost rate 60.00), XNC (consultant, no cost rate) | ICDE |
| US01 | USD | XUS (senior, cost rate 80.00) | ICUS, ICUS2 |

Names differ from the posting tests' ERP master data (P1.., E1..), which every posting
environment starts with, so the window's master-data push adds these unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tests.support.csvtools import te
from tests.support.staging_helpers import World

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

EMPLOYEES = [
    dict(
        employee_id=e,
        employee_name=n,
        legal_entity=le,
        role=r,
        cost_rate=c,
        currency=cur,
        active="true",
    )
    for e, n, le, r, c, cur in (
        ("XDE", "Jörg Weber", "DE01", "consultant", "60.00", "EUR"),
        ("XNC", "Nina Cole", "DE01", "consultant", "", "EUR"),
        ("XUS", "Ann Lee", "US01", "senior", "80.00", "USD"),
    )
]


def project(code: str, le: str, currency: str) -> dict[str, str]:
    return dict(
        project_code=code,
        project_name=f"Project {code}",
        customer_id="C1",
        customer_name="Acme",
        legal_entity=le,
        currency=currency,
        billing_method="time_and_materials",
        status="open",
        start_date="2026-01-01",
        end_date="",
        updated_at="2026-01-01T00:00:00Z",
    )


PROJECTS = [
    project("ICUS", "US01", "USD"),
    project("ICUS2", "US01", "USD"),
    project("ICDE", "DE01", "EUR"),
]
TASKS = [
    dict(project_code=p, task_code="T1", task_name="Work", billable="true")
    for p in ("ICUS", "ICUS2", "ICDE")
]


def fx(day: str, rate: str, frm: str = "EUR", to: str = "USD", source: str = "ECB") -> dict:
    return dict(
        rate_date=day,
        from_currency=frm,
        to_currency=to,
        rate=rate,
        source=source,
        updated_at=f"{day}T16:00:00Z",
    )


def ic_entry(
    entry_id: str = "IC1",
    project: str = "ICUS",
    employee: str = "XDE",
    day: str = "2026-10-15",
    hours: str = "8.00",
    rate: str = "150.00",
    currency: str | None = None,
    **kw: str,
) -> dict[str, str]:
    """An approved entry; its currency is the project's unless given."""
    cur = currency or {"ICUS": "USD", "ICUS2": "USD", "ICDE": "EUR"}.get(project, "USD")
    return te(
        entry_id=entry_id,
        employee_id=employee,
        employee_name=employee,
        project_code=project,
        task_code="T1",
        work_date=day,
        hours=hours,
        bill_rate=rate,
        currency=cur,
        approved_at=f"{day}T18:00:00+00:00",
        updated_at=kw.pop("updated_at", f"{day}T18:00:00Z"),
        **kw,
    )


class IntercompanyWorld(World):
    """Two legal entities' master data landed; `validate` at `NOW`."""

    def master(self) -> IntercompanyWorld:
        self.land("employees", EMPLOYEES)
        self.land("projects", PROJECTS)
        self.land("project_tasks", TASKS)
        return self

    def rates(self, *rows: dict) -> None:
        self.land("fx_rates", list(rows))

    def entries(self, *rows: dict) -> None:
        self.land("time_entries", list(rows))

    def validate(self, now: datetime = NOW):
        return super().validate(now)

    def validated(self, entry_id: str) -> dict:
        df = self.db.query_df(
            "SELECT * FROM validated_time_entries WHERE entry_id = :e", {"e": entry_id}
        )
        assert len(df) == 1, f"{entry_id} is not validated once: {len(df)}"
        return df.iloc[0].to_dict()
