"""Owners and due dates from the routing rules: first match by rule, the project's manager
(master data, DuckDB and PostgreSQL), dataset, legal entity, default; due dates in business days per rule class, the shortest of a row's rules."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from staging_models import desk_digest, desk_items
from staging_models.contracts import RULES
from staging_models.db import StagingDB
from staging_models.desk_routing import due_dates, owners, rule_class
from tests.support.staging_helpers import (
    EMPLOYEES,
    NOW,
    PROJECTS,
    RATE_CARDS,
    TASKS,
    World,
    entry,
)


def _frame() -> pd.DataFrame:
    friday = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    return pd.DataFrame(
        {
            "dataset": ["time_entries", "invoices", "time_entries", "employees"],
            "rule_codes": [
                "TE_HOURS_OVER_24,TE_UNKNOWN_EMPLOYEE",
                "INV_AMOUNT_MISMATCH",
                "TE_WORK_DATE_FORMAT",
                "EMP_LEGAL_ENTITY_MISSING",
            ],
            "legal_entity": ["US01", "DE01", "DE01", None],
            "first_seen": [friday] * 4,
        }
    )


def test_owner_is_the_first_match() -> None:
    rules = {
        "rules": {"TE_UNKNOWN_EMPLOYEE": "hr-data"},
        "datasets": {"invoices": "billing"},
        "entities": {"DE01": "finance-de"},
        "default": "finance-ops",
    }
    assert owners(_frame(), rules).tolist() == ["hr-data", "billing", "finance-de", "finance-ops"]
    assert owners(_frame(), {}).tolist() == ["finance-ops"] * 4


def test_due_date_in_business_days_shortest_rule_wins() -> None:
    days = {"format": 1, "master_data": 2, "data": 5}
    got = due_dates(_frame(), days).tolist()
    # Friday 2026-11-20: master data (2 days, beats the range rule's 5) -> Tuesday; data 5 ->
    # the next Friday; format 1 -> Monday.
    assert got == [date(2026, 11, 24), date(2026, 11, 27), date(2026, 11, 23), date(2026, 11, 23)]


@pytest.mark.parametrize(
    "code, cls",
    [
        ("TE_PROJECT_CLOSED", "master_data"),
        ("TE_RATE_MISSING", "master_data"),
        ("RC_OVERLAP", "master_data"),
        ("TE_PROJECT_CODE_MISSING", "format"),
        ("INV_STATUS_UNKNOWN", "format"),
        ("TE_CURRENCY_INVALID", "format"),
        ("TE_HOURS_OVER_24", "data"),
        ("INV_DUPLICATE_CONFLICT", "data"),
    ],
)
def test_rule_classes(code: str, cls: str) -> None:
    assert rule_class(code) == cls


def test_every_rule_has_a_class() -> None:
    codes = [r.code for rules in RULES.values() for r in rules]
    assert {rule_class(c) for c in codes} == {"format", "master_data", "data"}


def test_project_manager_rule_kind() -> None:
    """`project_manager: true` routes to the project's manager after the rule-code routes and
    before datasets and entities; a project without one falls through."""
    frame = _frame().assign(project_manager=["maria", "jon", "", None])
    rules = {
        "rules": {"TE_UNKNOWN_EMPLOYEE": "hr-data"},
        "project_manager": True,
        "datasets": {"invoices": "billing"},
        "entities": {"DE01": "finance-de"},
    }
    assert owners(frame, rules).tolist() == ["hr-data", "jon", "finance-de", "finance-ops"]
    assert owners(frame, {**rules, "project_manager": False}).tolist()[1] == "billing"


def test_exception_on_a_project_goes_to_its_manager(
    any_db: StagingDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Master data names P2's manager: its exception is routed there and the digest finds the
    manager's address in the same master data; an unknown project falls through to default."""
    monkeypatch.setenv("STAGEPOST_DESK_ROUTING", '{"project_manager": true}')
    monkeypatch.delenv("STAGEPOST_DESK_OWNER_EMAILS", raising=False)
    w = World(any_db, tmp_path / "in")
    projects = [
        {**p, "project_manager": "maria", "manager_email": "maria@example.com"}
        if p["project_code"] == "P2"
        else p
        for p in PROJECTS
    ]
    w.land("employees", EMPLOYEES)
    w.land("projects", projects)
    w.land("project_tasks", TASKS)
    w.land("rate_cards", RATE_CARDS)
    assert any_db.scalar("SELECT project_manager FROM stg_projects WHERE row_key = 'P2'") == "maria"
    ok = "2026-11-12T09:00:00+01:00"
    w.land(
        "time_entries",
        [
            entry(entry_id="TE2", approved_at=ok, project_code="P2", work_date="2026-11-04"),
            entry(entry_id="TE9", approved_at=ok, project_code="P9"),
        ],
    )
    w.validate()
    assert w.codes("TE2") == {"TE_PROJECT_CLOSED"} and "TE_UNKNOWN_PROJECT" in w.codes("TE9")
    desk_items.refresh(any_db)
    with any_db.engine.connect() as conn:
        got = dict(conn.execute(sa.text("SELECT group_key, owner FROM desk_assignments")).all())
    assert got == {"TE2": "maria", "TE9": "finance-ops"}
    digests = {d.owner: d for d in desk_digest.collect(any_db, NOW)}
    assert digests["maria"].address == "maria@example.com" and digests["maria"].new_total == 1
    assert digests["finance-ops"].address is None


def test_manager_email_must_be_an_address(duck_db: StagingDB, tmp_path: Path) -> None:
    """A manager e-mail the digest could not send to is quarantined, naming the value; an
    empty one is fine (the column is optional)."""
    w = World(duck_db, tmp_path / "in")
    w.land(
        "projects",
        [
            {**PROJECTS[0], "project_manager": "maria", "manager_email": "maria at example"},
            {**PROJECTS[1], "project_manager": "jon", "manager_email": "jon@example.com"},
            {**PROJECTS[2], "project_manager": "lee"},
        ],
    )
    w.validate()
    assert w.codes(PROJECTS[0]["project_code"], "projects") == {"PRJ_MANAGER_EMAIL_INVALID"}
    assert w.codes(PROJECTS[1]["project_code"], "projects") == set()
    assert w.codes(PROJECTS[2]["project_code"], "projects") == set()
    message = duck_db.scalar(
        "SELECT messages FROM quarantine WHERE dataset = 'projects' AND status = 'open'"
    )
    assert "manager e-mail 'maria at example' is not an e-mail address" in message


def test_routed_exceptions_follow_a_project_that_gains_a_manager(
    any_db: StagingDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """P1 has no manager: its exceptions go to the default owner. When master data names one,
    the next refresh moves the exceptions the routing placed to the manager; one a person
    assigned stays with that person, and due dates stay as first set."""
    from desk.actions import assign
    from desk.sessions import Session

    monkeypatch.setenv("STAGEPOST_DESK_ROUTING", '{"project_manager": true}')
    w = World(any_db, tmp_path / "in").master()
    ok = "2026-11-12T09:00:00+01:00"
    w.land(
        "time_entries",
        [entry(entry_id=k, approved_at=ok, hours="25.00") for k in ("TE1", "TE2", "TE3")],
    )
    w.validate()
    assert w.codes("TE1") == {"TE_HOURS_OVER_24"}
    desk_items.refresh(any_db)

    def assignments() -> dict[str, tuple]:
        with any_db.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT group_key, owner, due_date, routed FROM desk_assignments")
            ).all()
        return {r[0]: tuple(r[1:]) for r in rows}

    first = assignments()
    assert {k: v[0] for k, v in first.items()} == dict.fromkeys(
        ("TE1", "TE2", "TE3"), "finance-ops"
    )
    who = Session(username="fin", role="finance", csrf="x", expires=0)
    assign(any_db, who, [("time_entries", "TE3")], "li", None)
    assert desk_items.refresh(any_db) is False  # nothing changed since

    projects = [
        {**p, "project_manager": "maria", "updated_at": "2026-11-20T00:00:00Z"}
        if p["project_code"] == "P1"
        else p
        for p in PROJECTS
    ]
    w.land("projects", projects)
    assert desk_items.refresh(any_db) is True
    after = assignments()
    assert {k: v[0] for k, v in after.items()} == {"TE1": "maria", "TE2": "maria", "TE3": "li"}
    assert after["TE1"][1] == first["TE1"][1] and after["TE1"][2] is True
    assert after["TE3"][2] is False
    with any_db.engine.connect() as conn:
        owners_cached = conn.execute(
            sa.text("SELECT value FROM desk_state WHERE key = 'owners'")
        ).scalar()
    assert owners_cached == '["li", "maria"]'
