"""Project set-up from won CRM deals into the SQL-interface ERP, on DuckDB and PostgreSQL
staging (the ERP on the same backend): customer, project and template tasks exactly once, also
after a SIGKILL anywhere in the set-up; the PSA import file; a later budget change applied, a
currency change quarantined (DEAL_IMMUTABLE_CHANGED), the legal entity fixed once time is
posted. Tryton: test_deal_setup_tryton.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from connectors.erp.sql_interface import SqlInterfaceTarget
from posting.deal_setup import STEPS
from posting.window import WindowConfig, run_window
from staging_models.db import StagingDB
from staging_models.landing import land_file
from staging_models.validation import conservation
from tests.support.deal_world import DealWorld, deal, run_child
from tests.support.posting_helpers import pg_schema
from tests.support.staging_helpers import entry


@pytest.fixture
def erp_url(any_db: StagingDB, tmp_path: Path, pg_available: bool) -> Iterator[str]:
    """The SQL-interface ERP on the staging database's backend."""
    if any_db.is_duckdb:
        yield f"duckdb:///{tmp_path / 'erp.duckdb'}"
        return
    with pg_schema(pg_available, "sp_deal") as url:
        yield url


@pytest.fixture
def erp(erp_url: str) -> Iterator[SqlInterfaceTarget]:
    target = SqlInterfaceTarget(erp_url)
    yield target
    target.close()


@pytest.fixture
def world(any_db: StagingDB, tmp_path: Path) -> DealWorld:
    return DealWorld(any_db, tmp_path).with_templates()


def _erp(erp: SqlInterfaceTarget, sql: str) -> pd.DataFrame:
    with erp.engine.connect() as conn:
        return pd.read_sql(sql, conn)


def _erp_counts(erp: SqlInterfaceTarget) -> dict[str, int]:
    return {
        t: int(_erp(erp, f"SELECT COUNT(*) AS n FROM {t}")["n"].iloc[0])
        for t in ("erp_customers", "erp_projects", "erp_tasks")
    }


def test_won_deal_becomes_customer_project_and_tasks_once(
    world: DealWorld, erp: SqlInterfaceTarget
) -> None:
    world.deals(
        deal(),
        deal(deal_id="D101", customer_id="C7", deal_name="Acme audit", template_code="AUDIT"),
        deal(deal_id="D102", stage="negotiation"),
        deal(deal_id="D103", currency="EUR"),
    )
    result = world.set_up(erp)
    assert (result.set_up, result.updated, result.quarantined) == (["D100", "D101"], [], ["D103"])
    assert _erp_counts(erp) == {"erp_customers": 1, "erp_projects": 2, "erp_tasks": 4}
    project = _erp(erp, "SELECT * FROM erp_projects WHERE project_code = 'D100'").iloc[0]
    assert project["project_name"] == "Acme ERP rollout"
    assert (project["customer_id"], project["legal_entity"], project["currency"]) == (
        "C7",
        "US01",
        "USD",
    )
    assert Decimal(str(project["budget_hours"])) == Decimal("800")
    assert Decimal(str(project["contract_value"])) == Decimal("120000.00")
    assert (project["deal_id"], project["project_manager"]) == ("D100", "Ann Lee")
    tasks = _erp(erp, "SELECT task_code FROM erp_tasks WHERE project_code = 'D100' ORDER BY 1")
    assert tasks["task_code"].tolist() == ["DELIV", "DISC", "PM"]

    status = world.setups().set_index("deal_id")
    assert status.loc["D100", ["status", "erp_customer_id", "erp_project_id"]].tolist() == [
        "set_up",
        "C7",
        "D100",
    ]
    assert status.loc["D103", "status"] == "quarantined"
    assert "DEAL_CURRENCY_NOT_OF_ENTITY" in status.loc["D103", "reason"]
    assert pd.isna(status.loc["D103", "currency"])  # never set up: nothing is locked
    assert "D102" not in status.index  # not won: no set-up, no status

    # Run again: nothing is created twice, no file is written again.
    again = world.set_up(erp)
    assert (again.set_up, again.updated, again.psa_files) == ([], [], [])
    assert _erp_counts(erp) == {"erp_customers": 1, "erp_projects": 2, "erp_tasks": 4}


def test_psa_import_file_is_canonical_whole_and_lands_back(
    world: DealWorld, erp: SqlInterfaceTarget
) -> None:
    world.deals(deal())
    result = world.set_up(erp)
    projects, tasks = result.psa_files
    assert projects.name.startswith("projects_deals_")
    assert tasks.name.startswith("project_tasks_deals_")
    assert sorted(p.name for p in world.outbound.iterdir()) == sorted([projects.name, tasks.name])
    assert projects.read_text().splitlines() == [
        "project_code,project_name,customer_id,customer_name,legal_entity,currency,"
        "billing_method,status,start_date,end_date,updated_at,project_manager,manager_email,"
        "billing_hold,billing_hold_reason,billing_hold_since,recognition_method,contract_value,"
        "budget_hours,budget_cost",
        "D100,Acme ERP rollout,C7,Acme Corp,US01,USD,time_and_materials,open,2026-12-01,"
        "2027-05-31,2026-11-20T12:01:00Z,Ann Lee,,,,,,120000.00,800.0000,",
    ]
    assert tasks.read_text().splitlines() == [
        "project_code,task_code,task_name,billable",
        "D100,DELIV,Delivery,true",
        "D100,DISC,Discovery,true",
        "D100,PM,Project management,false",
    ]
    assert world.setups().loc[0, "psa_file"] == projects.name
    # The PSA imports it and exports it back: stagepost lands it as canonical master data,
    # and the deal's own project does not count as a taken project code.
    land_file(world.db, projects, "projects")
    land_file(world.db, tasks, "project_tasks")
    world.validate()
    assert world.state("D100", "projects") == "valid"
    assert world.state("D100", "crm_deals") == "valid"
    assert conservation(world.db)["ok"].all()


def test_fixed_fee_deal_lands_back_with_its_revenue_figures(
    world: DealWorld, erp: SqlInterfaceTarget
) -> None:
    """A deal's contract value and budget hours reach the PSA import file's canonical revenue
    columns: a fixed-fee deal comes back as a fixed-fee project revenue recognition can measure
    (docs/revenue.md); a budget of 0 h is left empty, so that project is quarantined by the
    projects' contract (a fixed-fee project needs a budget), not by a 0 h budget."""
    world.deals(
        deal(billing_method="fixed_fee", contract_value="50000.00", budget_hours="400.5"),
        deal(deal_id="D101", billing_method="fixed_fee", budget_hours="0"),
    )
    result = world.set_up(erp)
    assert result.set_up == ["D100", "D101"]
    land_file(world.db, result.psa_files[0], "projects")
    land_file(world.db, result.psa_files[1], "project_tasks")
    world.validate()
    assert world.state("D100", "projects") == "valid"
    assert world.state("D101", "projects") == "quarantined"
    staged = world.db.query_df(
        """SELECT row_key, billing_method, recognition_method, contract_value, budget_hours
           FROM stg_projects WHERE is_current ORDER BY row_key"""
    ).set_index("row_key")
    assert staged.loc["D100", "billing_method"] == "fixed_fee"
    assert pd.isna(staged.loc["D100", "recognition_method"])  # the billing method's
    assert Decimal(str(staged.loc["D100", "contract_value"])) == Decimal("50000.00")
    assert Decimal(str(staged.loc["D100", "budget_hours"])) == Decimal("400.5")
    rules = world.db.query_df(
        "SELECT rule_code FROM quarantine_violations WHERE dataset = 'projects' AND row_key = 'D101'"
    )["rule_code"].tolist()
    assert rules == ["PRJ_FIXED_FEE_NO_BUDGET"]
    assert conservation(world.db)["ok"].all()


def test_budget_change_is_applied_and_currency_change_quarantined(
    world: DealWorld, erp: SqlInterfaceTarget
) -> None:
    world.deals(deal())
    world.set_up(erp)
    world.deals(
        deal(
            budget_hours="950.5",
            end_date="2027-06-30",
            project_manager="Jörg Müller",
            updated_at="2026-11-19T00:00:00Z",
        )
    )
    changed = world.set_up(erp)
    assert changed.updated == ["D100"]
    project = _erp(erp, "SELECT * FROM erp_projects").iloc[0]
    assert Decimal(str(project["budget_hours"])) == Decimal("950.5")
    assert project["end_date"] == date(2027, 6, 30)
    assert project["project_manager"] == "Jörg Müller"
    assert project["updated_at"] is not None
    assert _erp_counts(erp) == {"erp_customers": 1, "erp_projects": 1, "erp_tasks": 3}
    row = world.setups().iloc[0]
    assert (row["status"], row["applied_version"], row["psa_version"]) == ("updated", 2, 2)
    assert "2027-06-30" in (world.outbound / changed.psa_files[0].name).read_text()

    # DE01's currency is EUR; the US01 deal's currency must not change once set up.
    world.deals(deal(budget_hours="1000", currency="EUR", updated_at="2026-11-20T00:00:00Z"))
    assert world.codes("D100", "crm_deals") == {
        "DEAL_IMMUTABLE_CHANGED",
        "DEAL_CURRENCY_NOT_OF_ENTITY",
    }
    blocked = world.set_up(erp)
    assert (blocked.updated, blocked.quarantined, blocked.psa_files) == ([], ["D100"], [])
    project = _erp(erp, "SELECT * FROM erp_projects").iloc[0]
    assert (project["currency"], Decimal(str(project["budget_hours"]))) == (
        "USD",
        Decimal("950.5"),
    )  # the ERP keeps the applied version whole
    row = world.setups().iloc[0]
    assert (row["status"], row["applied_version"]) == ("quarantined", 2)
    assert "this may no longer change: currency USD -> EUR" in row["reason"]

    # The CRM puts the currency back: the budget change goes through.
    world.deals(deal(budget_hours="1000", updated_at="2026-11-21T00:00:00Z"))
    back = world.set_up(erp)
    assert back.updated == ["D100"] and back.quarantined == []
    assert world.setups().iloc[0]["status"] == "updated"
    project = _erp(erp, "SELECT * FROM erp_projects").iloc[0]
    assert Decimal(str(project["budget_hours"])) == Decimal("1000")


def test_legal_entity_may_change_until_time_is_posted(
    world: DealWorld, erp: SqlInterfaceTarget
) -> None:
    # A second USD entity, so only the legal entity changes.
    world.land(
        "employees",
        [
            dict(
                employee_id="E3",
                employee_name="Sam Ortiz",
                legal_entity="US02",
                role="senior",
                cost_rate="70.00",
                currency="USD",
                active="true",
            )
        ],
    )
    world.deals(deal())
    result = world.set_up(erp)
    world.deals(deal(legal_entity="US02", updated_at="2026-11-19T00:00:00Z"))
    moved = world.set_up(erp)
    assert moved.updated == ["D100"]
    assert _erp(erp, "SELECT legal_entity FROM erp_projects").iloc[0, 0] == "US02"

    # The PSA imports the project (file of the last run), time is logged and posted.
    for f in (*result.psa_files, *moved.psa_files):
        land_file(world.db, f, f.name.split("_deals_")[0])
    world.land(
        "time_entries",
        [
            entry(
                entry_id="T1",
                employee_id="E3",
                project_code="D100",
                task_code="DELIV",
                work_date="2026-12-02",
                hours="6",
                bill_rate="150.00",
                currency="USD",
                approved_at="2026-12-03T09:00:00Z",
            )
        ],
    )
    world.validate(now=world.clock + timedelta(days=20))
    assert world.state("T1") == "valid"
    window = run_window(world.db, erp, WindowConfig(dry_run=False), now=world.clock)
    assert window.counts.get("confirmed") == 1, (window.message, window.counts)

    world.deals(deal(legal_entity="US01", updated_at="2026-11-20T00:00:00Z"))
    assert world.codes("D100", "crm_deals") == {"DEAL_IMMUTABLE_CHANGED"}
    blocked = world.set_up(erp)
    assert blocked.quarantined == ["D100"]
    reason = world.setups().iloc[0]["reason"]
    assert "legal entity (time is posted) US02 -> US01" in reason
    assert _erp(erp, "SELECT legal_entity FROM erp_projects").iloc[0, 0] == "US02"


# -- SIGKILL during set-up ---------------------------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
def test_sigkill_during_setup_then_rerun_creates_everything_once(
    world: DealWorld, erp_url: str, step: str
) -> None:
    world.deals(deal(), deal(deal_id="D101", template_code="AUDIT", customer_id="C8"))
    world.clock += timedelta(minutes=1)
    assert run_child(world.db, erp_url, world.outbound, step, world.clock) == -9
    # The ledger was committed before the ERP saw anything.
    assert set(world.setups()["status"]) <= {"sending", "set_up"}

    erp = SqlInterfaceTarget(erp_url)
    try:
        rerun = world.set_up(erp)
        assert _erp_counts(erp) == {"erp_customers": 2, "erp_projects": 2, "erp_tasks": 4}
        ids = _erp(erp, "SELECT project_code, task_code FROM erp_tasks")
        assert not ids.duplicated().any()
        status = world.setups()
        assert status["status"].tolist() == ["set_up", "set_up"]
        assert status["applied_version"].tolist() == [1, 1]
        assert status["psa_version"].tolist() == [1, 1]
        # Killed after the ERP committed: the re-run finds the projects and records them
        # (as set up, not as a change); killed after the files: written again, same content.
        if step in ("planned", "erp_done"):
            assert rerun.set_up == ["D100", "D101"]
        else:
            assert rerun.set_up == []
        projects = sorted(world.outbound.glob("projects_deals_*.csv"))
        assert projects and all(
            p.read_text().count("\n") == 3 for p in projects
        )  # header and both deals, whole
        assert not list(world.outbound.glob(".*.part"))
        assert world.set_up(erp).sent == 0  # and a third run has nothing to do
    finally:
        erp.close()


def test_a_killed_setup_is_confirmed_before_a_later_quarantined_version_counts(
    world: DealWorld, erp_url: str
) -> None:
    """Killed after the ERP created the project; the CRM then changes the currency. The re-run
    confirms what the ERP holds (version 1) and then reports the new version quarantined."""
    world.deals(deal())
    world.clock += timedelta(minutes=1)
    assert run_child(world.db, erp_url, world.outbound, "erp_done", world.clock) == -9
    world.deals(deal(currency="EUR", updated_at="2026-11-19T00:00:00Z"))
    assert world.codes("D100", "crm_deals") >= {"DEAL_IMMUTABLE_CHANGED"}
    erp = SqlInterfaceTarget(erp_url)
    try:
        rerun = world.set_up(erp)
        assert (rerun.set_up, rerun.quarantined) == (["D100"], ["D100"])
        assert _erp_counts(erp) == {"erp_customers": 1, "erp_projects": 1, "erp_tasks": 3}
        assert _erp(erp, "SELECT currency FROM erp_projects").iloc[0, 0] == "USD"
        row = world.setups().iloc[0]
        assert (row["status"], row["applied_version"], row["erp_project_id"]) == (
            "quarantined",
            1,
            "D100",
        )
        assert "currency USD -> EUR" in row["reason"]
    finally:
        erp.close()
