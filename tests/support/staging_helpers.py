"""A small, consistent PSA world for contract tests: land it, add bad rows, validate."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from staging_models.db import StagingDB
from staging_models.landing import land_file
from staging_models.validation import validate_all
from tests.support.csvtools import te, write_csv

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

EMPLOYEES = [
    dict(
        employee_id="E1",
        employee_name="Ann Lee",
        legal_entity="US01",
        role="senior",
        cost_rate="80.00",
        currency="USD",
        active="true",
    ),
    dict(
        employee_id="E2",
        employee_name="Jörg Müller",
        legal_entity="DE01",
        role="consultant",
        cost_rate="60.00",
        currency="EUR",
        active="true",
    ),
]
PROJECTS = [
    dict(
        project_code="P1",
        project_name="Audit",
        customer_id="C1",
        customer_name="Acme",
        legal_entity="US01",
        currency="USD",
        billing_method="time_and_materials",
        status="open",
        start_date="2026-01-01",
        end_date="2026-12-31",
        updated_at="2026-01-01T00:00:00Z",
    ),
    dict(
        project_code="P2",
        project_name="Closed one",
        customer_id="C1",
        customer_name="Acme",
        legal_entity="US01",
        currency="USD",
        billing_method="time_and_materials",
        status="closed",
        start_date="2026-01-01",
        end_date="",
        updated_at="2026-01-01T00:00:00Z",
    ),
    dict(
        project_code="P3",
        project_name="Internal",
        customer_id="C0",
        customer_name="Us",
        legal_entity="US01",
        currency="USD",
        billing_method="non_billable",
        status="open",
        start_date="2026-01-01",
        end_date="",
        updated_at="2026-01-01T00:00:00Z",
    ),
    dict(
        project_code="P4",
        project_name="Paused",
        customer_id="C1",
        customer_name="Acme",
        legal_entity="US01",
        currency="USD",
        billing_method="time_and_materials",
        status="on_hold",
        start_date="2026-01-01",
        end_date="",
        updated_at="2026-01-01T00:00:00Z",
    ),
    dict(
        project_code="P5",
        project_name="Berlin",
        customer_id="C2",
        customer_name="Beta GmbH",
        legal_entity="DE01",
        currency="EUR",
        billing_method="time_and_materials",
        status="open",
        start_date="2026-01-01",
        end_date="",
        updated_at="2026-01-01T00:00:00Z",
    ),
]
TASKS = [
    dict(project_code=p, task_code=t, task_name=t, billable=b)
    for p, t, b in [
        ("P1", "T1", "true"),
        ("P1", "T9", "false"),
        ("P2", "T1", "true"),
        ("P3", "T1", "false"),
        ("P4", "T1", "true"),
        ("P5", "T1", "true"),
    ]
]
RATE_CARDS = [
    dict(
        project_code="P1",
        employee_id="",
        role="senior",
        bill_rate="200.00",
        currency="USD",
        valid_from="2026-01-01",
        valid_to="2026-06-30",
    ),
    dict(
        project_code="P1",
        employee_id="",
        role="senior",
        bill_rate="210.00",
        currency="USD",
        valid_from="2026-07-01",
        valid_to="",
    ),
    dict(
        project_code="P1",
        employee_id="E1",
        role="",
        bill_rate="250.00",
        currency="USD",
        valid_from="2026-11-01",
        valid_to="2026-11-15",
    ),
]


class World:
    """Writes files into a folder, lands them in order, validates, and answers questions."""

    def __init__(self, db: StagingDB, folder: Path) -> None:
        self.db, self.folder, self.n = db, folder, 0

    def land(self, dataset: str, rows: list[dict]) -> None:
        self.n += 1
        f = write_csv(self.folder / f"{dataset}_{self.n:03d}.csv", dataset, rows)
        land_file(self.db, f, dataset)

    def master(self) -> World:
        self.land("employees", EMPLOYEES)
        self.land("projects", PROJECTS)
        self.land("project_tasks", TASKS)
        self.land("rate_cards", RATE_CARDS)
        return self

    def validate(self, now: datetime = NOW):
        return validate_all(self.db, now=now, actor="test")

    def codes(self, key: str, dataset: str = "time_entries") -> set[str]:
        """Rule codes of the open quarantine row of the current version of `key`."""
        got = self.db.scalar(
            f"""SELECT q.rule_codes FROM quarantine q JOIN stg_{dataset} s ON s.row_key = q.row_key
               AND s.version = q.version WHERE q.dataset = :d AND q.row_key = :k AND s.is_current
               AND q.status = 'open'""",
            {"d": dataset, "k": key},
        )
        return set(got.split(",")) if got else set()

    def state(self, key: str, dataset: str = "time_entries") -> str:
        return self.db.scalar(
            f"SELECT state FROM stg_{dataset} WHERE row_key = :k AND is_current", {"k": key}
        )


def entry(**kw: str) -> dict[str, str]:
    return te(**kw)
