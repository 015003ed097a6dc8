"""API pulls as exact as files: amounts from whole seconds (02:14:54 at 75/h is 168.63, where
hours rounded to 4 places give 168.62), the vendor's own amount checked (TE_AMOUNT_MISMATCH),
Kimai's fixed prices kept as amounts, where an approval time came from (`approved_at_source`),
and employees, projects and tasks derived from the pulled entries (Toggl, Kimai, Clockify), so
one vendor's pull alone validates to valid rows. Local replays of the vendors' APIs."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.sources.api.toggl_rates import WorkspaceRates
from staging_models.api_pull import pull
from staging_models.db import StagingDB
from staging_models.validation import validate_all
from tests.support.api_vendors import (
    DEFAULTS,
    clockify_vendor,
    harvest_vendor,
    kimai_vendor,
    toggl_vendor,
)
from tests.support.vendor_api import FakeClockify, FakeHarvest, FakeKimai, FakeToggl, serve

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
APPROVING = dataclasses.replace(DEFAULTS, approval="approved")


def _validated(db: StagingDB) -> dict[str, tuple[Decimal, str]]:
    df = db.query_df("SELECT entry_id, amount, rate_source FROM validated_time_entries")
    return {r.entry_id: (r.amount, r.rate_source) for r in df.itertuples()}


def _states(db: StagingDB, table: str = "stg_time_entries") -> dict[str, int]:
    df = db.query_df(f"SELECT state, count(*) AS n FROM {table} WHERE is_current GROUP BY state")
    return dict(zip(df.state, df.n, strict=True))


def _quarantine(db: StagingDB) -> list[tuple[str, str]]:
    df = db.query_df("SELECT rule_codes, messages FROM quarantine ORDER BY rule_codes")
    return list(zip(df.rule_codes, df.messages, strict=True))


def _column(db: StagingDB, column: str) -> dict[str, object]:
    df = db.query_df(f"SELECT row_key, {column} FROM stg_time_entries WHERE is_current")
    return dict(zip(df.row_key, df[column], strict=True))


def test_toggl_pull_alone_validates_with_exact_amounts(any_db: StagingDB, tmp_path: Path) -> None:
    """A Toggl-only user: no master data, no rate card. Employees, the project and its task
    `General` are derived from the pull, rates come from Toggl's hierarchy, the legal entity
    from STAGEPOST_DEFAULT_LEGAL_ENTITY; 2:14:54 at the project's 75/h is 168.63."""
    with serve(FakeToggl("tg-token")) as fake:
        fake.edit(3400000003, duration=8094)  # 2:14:54
        r = pull(
            any_db,
            toggl_vendor(fake, defaults=APPROVING),
            "time_entries",
            source_name="toggl",
            folder=tmp_path,
            now=NOW,
        )
    derived = r.load["extra"]["derived"]
    assert {k: v["rows_new_version"] for k, v in derived.items()} == {
        "employees": 1,
        "projects": 1,
        "project_tasks": 1,
    }
    validate_all(any_db, actor="test")
    assert _quarantine(any_db) == []
    assert _states(any_db) == {"valid": 4}
    for table in ("stg_employees", "stg_projects", "stg_project_tasks"):
        assert _states(any_db, table) == {"valid": 1}
    amounts = _validated(any_db)
    assert amounts["toggl:3400000003"] == (Decimal("168.63"), "entry")
    assert amounts["toggl:3400000001"] == (Decimal("150.00"), "entry")  # 7200 s at 75
    assert _column(any_db, "duration_seconds")["toggl:3400000003"] == 8094
    project = any_db.query_df("SELECT * FROM stg_projects WHERE is_current").iloc[0]
    assert (project.project_code, project.project_name, project.customer_id) == (
        "193791",
        "Website",
        "Acme",
    )
    assert (project.legal_entity, project.currency) == ("DE01", "EUR")
    assert set(_column(any_db, "approved_at_source").values()) == {"updated_at"}


def test_toggl_rates_hidden_from_the_token_land_entries_without_a_rate(
    duck_db: StagingDB, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A non-admin token may not read rates (403): the entries still land, and are quarantined
    as TE_RATE_MISSING (visible, not priced at a guess); the pull does not fail."""
    with serve(FakeToggl("tg-token")) as fake:
        fake.sees_rates = False
        r = pull(
            duck_db,
            toggl_vendor(fake, defaults=APPROVING),
            "time_entries",
            source_name="toggl",
            folder=tmp_path,
            now=NOW,
        )
    assert r.records == 4 and "not readable" in caplog.text
    validate_all(duck_db, actor="test")
    assert {codes for codes, _ in _quarantine(duck_db)} == {"TE_RATE_MISSING"}


def test_toggl_rate_hierarchy() -> None:
    """Toggl bills the most specific rate: the person's on the project, the project's, the
    person's in the workspace, the workspace default; none set: no rate (never a guess)."""
    rates = WorkspaceRates(
        default_rate=Decimal(60),
        default_currency="EUR",
        member={"7": Decimal(70)},
        project={"p1": Decimal(75)},
        project_currency={"p1": "USD"},
        project_member={("p1", "7"): Decimal(95), ("p9", "7"): Decimal(99)},
        projects={"p1", "p2"},
    )
    assert rates.rate("p1", "7") == Decimal(95)
    assert rates.rate("p1", "6") == Decimal(75)
    assert rates.rate("p2", "7") == Decimal(70)
    assert rates.rate("p2", "6") == Decimal(60)
    assert WorkspaceRates().rate("p1", "6") is None
    # a project the workspace did not list: its own rate is unknown, no fallback
    assert rates.rate("p9", "6") is None and rates.rate("p9", "7") == Decimal(99)
    assert (rates.currency("p1"), rates.currency("p2")) == ("USD", "EUR")


def test_clockify_amount_from_exact_seconds(duck_db: StagingDB, tmp_path: Path) -> None:
    """PT2H14M54S at 75.00 is 168.63 (2.2483 h x 75 = 168.62); an APPROVED entry's time is its
    end, and the row says so."""
    with serve(FakeClockify("ck-token")) as fake:
        fake.entries[0]["approvalStatus"] = "APPROVED"
        pull(
            duck_db,
            clockify_vendor(fake),
            "time_entries",
            source_name="clockify",
            folder=tmp_path,
            now=NOW,
        )
    validate_all(duck_db, actor="test")
    assert _quarantine(duck_db) == []
    first = "clockify:6543a0000000000000000001"
    assert _validated(duck_db)[first] == (Decimal("168.63"), "entry")
    assert _column(duck_db, "duration_seconds")[first] == 8094
    source = _column(duck_db, "approved_at_source")
    assert source[first] == "column:timeInterval.end"
    assert source["clockify:6543a0000000000000000002"] is None  # submitted: no approval
    assert _column(duck_db, "approval_status")[first] == "approved"
    project = duck_db.query_df("SELECT * FROM stg_projects WHERE is_current").iloc[0]
    assert (project.project_name, project.customer_id, project.customer_name) == (
        "API platform",
        "64c1aa000000000000000001",
        "Northwind",
    )
    assert fake.requests[-1].query["hydrated"] == "true"
    assert duck_db.scalar("SELECT task_name FROM stg_project_tasks WHERE is_current") == "Backend"


def test_kimai_amounts_fixed_prices_and_the_vendors_own_amount(
    any_db: StagingDB, tmp_path: Path
) -> None:
    """Kimai's 0:07 at 95 is 11.08 from seconds (Kimai's own `rate`; hours would give 11.09),
    the 150 fixed price stays 150 with no made-up hourly rate, and an amount Kimai states
    differently from rate x duration is quarantined naming both."""
    with serve(FakeKimai("km-token")) as fake:
        fake.edit(104, duration=8094, hourlyRate=75, rate=Decimal("168.62"))
        pull(
            any_db,
            kimai_vendor(fake, defaults=APPROVING),
            "time_entries",
            source_name="kimai",
            folder=tmp_path,
            now=NOW,
        )
    validate_all(any_db, actor="test")
    amounts = _validated(any_db)
    assert amounts["kimai:102"] == (Decimal("11.08"), "entry")
    assert amounts["kimai:103"] == (Decimal("150.00"), "fixed")
    assert _column(any_db, "bill_rate")["kimai:103"] is None
    assert _column(any_db, "fixed_amount")["kimai:103"] == Decimal("150.00")
    ((codes, message),) = _quarantine(any_db)
    assert codes == "TE_AMOUNT_MISMATCH"
    assert "168.62" in str(message) and "168.63" in str(message)
    assert _states(any_db) == {"valid": 3, "quarantined": 1}
    assert set(_column(any_db, "approved_at_source").values()) == {"updated_at"}


def test_kimai_without_modified_at_is_approved_at_the_end(
    duck_db: StagingDB, tmp_path: Path
) -> None:
    with serve(FakeKimai("km-token")) as fake:
        kimai = kimai_vendor(fake, defaults=APPROVING)
        row = kimai.time_entry({**fake.entries[0], "modifiedAt": None})
    assert row["approved_at"] == "2026-11-02T12:30:00+01:00"
    assert row["approved_at_source"] == "column:end"


def test_harvest_closed_entry_says_its_approval_time_is_updated_at(
    duck_db: StagingDB, tmp_path: Path
) -> None:
    """Harvest has no approval time: a closed entry's updated_at stands in, and the row says
    so; Harvest's master data is pulled, not derived."""
    with serve(FakeHarvest("hv-token")) as fake:
        r = pull(
            duck_db,
            harvest_vendor(fake),
            "time_entries",
            source_name="harvest",
            folder=tmp_path,
            now=NOW,
        )
    assert "derived" not in r.load["extra"]
    df = duck_db.query_df(
        "SELECT approval_status, approved_at_source, count(*) AS n FROM stg_time_entries "
        "WHERE is_current GROUP BY ALL"
    )
    sources = dict(zip(df.approval_status, df.approved_at_source, strict=True))
    assert sources.get("approved") == "updated_at"
    assert sources.get("submitted") is None


@pytest.mark.parametrize("approval", ["submitted", "approved"])
def test_the_approval_setting_decides_and_is_recorded(approval: str) -> None:
    with serve(FakeToggl("tg-token")) as fake:
        vendor = toggl_vendor(fake, defaults=dataclasses.replace(DEFAULTS, approval=approval))
        row = vendor.time_entry(fake.entries[0])
    assert row["approval_status"] == approval
    if approval == "approved":
        assert (row["approved_at"], row["approved_at_source"]) == (
            "2026-11-02T10:00:05+00:00",
            "updated_at",
        )
        assert row["approved_by"] == "toggl (no approval in the vendor)"
    else:
        assert row["approved_at"] is None and row["approved_at_source"] is None
