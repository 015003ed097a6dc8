"""Project set-up from won CRM deals into a real Tryton 8.2: party, project work and task works
exactly once (also after a SIGKILL once Tryton holds them), the deal's terms on the project,
a later budget change written, a currency change quarantined before Tryton sees it."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from staging_models.db import StagingDB
from tests.support.deal_world import DealWorld, deal, run_child

if TYPE_CHECKING:
    from tests.support.tryton_fixtures import TrytonServer

pytestmark = pytest.mark.slow

#: The legal entity the Tryton fixtures map to the template's only company (USD).
LEGAL_ENTITY = "SPC-US"


def _world(db: StagingDB, folder: Path) -> DealWorld:
    world = DealWorld(db, folder).with_templates()
    world.land(
        "employees",
        [
            dict(
                employee_id="E9",
                employee_name="Ada Lovelace",
                legal_entity=LEGAL_ENTITY,
                role="senior",
                cost_rate="90.00",
                currency="USD",
                active="true",
            )
        ],
    )
    return world


def _works(rpc: Any, prefix: str) -> list[dict]:
    return rpc.model(
        "project.work",
        "search_read",
        [("external_id", "like", f"{prefix}%")],
        0,
        None,
        [("external_id", "ASC")],
        [
            "external_id",
            "name",
            "type",
            "parent",
            "party",
            "deal_id",
            "effort_duration",
            "start_date",
            "end_date",
            "contract_value",
            "project_manager",
            "billing_method",
        ],
    )


def _parties(rpc: Any) -> list[dict]:
    return rpc.model(
        "party.party",
        "search_read",
        [("external_id", "like", "customer:%")],
        0,
        None,
        None,
        ["external_id", "name"],
    )


def test_won_deal_in_tryton_once_after_a_sigkill_then_updated(
    tryton_server: TrytonServer, duck_db: StagingDB, tmp_path: Path
) -> None:
    world = _world(duck_db, tmp_path)
    world.deals(deal(legal_entity=LEGAL_ENTITY), deal(deal_id="D101", legal_entity=LEGAL_ENTITY))
    spec = {
        "url": tryton_server.url,
        "database": tryton_server.database,
        "password": tryton_server.password,
        "legal_entities": tryton_server.legal_entities,
    }
    # Killed after Tryton created everything, before staging recorded it.
    world.clock += dt.timedelta(minutes=1)
    assert run_child(
        world.db, f"tryton:{json.dumps(spec)}", world.outbound, "erp_done", world.clock
    )
    target = tryton_server.target()
    try:
        rerun = world.set_up(target)
        assert rerun.set_up == ["D100", "D101"]
        rpc = target.rpc
        assert [p["external_id"] for p in _parties(rpc)] == ["customer:C7"]
        works = {w["external_id"]: w for w in _works(rpc, "D10")}
        assert sorted(works) == [
            "D100",
            "D100::DELIV",
            "D100::DISC",
            "D100::PM",
            "D101",
            "D101::DELIV",
            "D101::DISC",
            "D101::PM",
        ]
        project = works["D100"]
        assert (project["type"], project["name"], project["deal_id"]) == (
            "project",
            "Acme ERP rollout",
            "D100",
        )
        assert project["effort_duration"] == dt.timedelta(hours=800)
        assert (project["start_date"], project["end_date"]) == (
            dt.date(2026, 12, 1),
            dt.date(2027, 5, 31),
        )
        assert project["contract_value"] == Decimal("120000.00")
        assert (project["project_manager"], project["billing_method"]) == (
            "Ann Lee",
            "time_and_materials",
        )
        assert works["D100::DELIV"]["parent"] == project["id"]
        status = world.setups().set_index("deal_id")
        assert status.loc["D100", "erp_project_id"] == str(project["id"])
        assert status.loc["D100", "erp_customer_id"] == str(_parties(rpc)[0]["id"])

        # A later budget change is written on the same work; nothing is created.
        world.deals(
            deal(
                legal_entity=LEGAL_ENTITY,
                budget_hours="812.25",
                project_manager="Bob Page",
                updated_at="2026-11-19T00:00:00Z",
            )
        )
        assert world.set_up(target).updated == ["D100"]
        after = {w["external_id"]: w for w in _works(rpc, "D10")}
        assert len(after) == 8 and len(_parties(rpc)) == 1
        assert after["D100"]["effort_duration"] == dt.timedelta(hours=812, minutes=15)
        assert after["D100"]["project_manager"] == "Bob Page"

        # A currency change is quarantined in staging: Tryton keeps the applied version.
        world.deals(
            deal(legal_entity=LEGAL_ENTITY, currency="EUR", updated_at="2026-11-20T00:00:00Z")
        )
        blocked = world.set_up(target)
        assert blocked.quarantined == ["D100"] and blocked.updated == []
        assert "DEAL_IMMUTABLE_CHANGED" in world.setups().set_index("deal_id").loc["D100", "reason"]
        assert _works(rpc, "D100")[0]["effort_duration"] == dt.timedelta(hours=812, minutes=15)
    finally:
        target.close()
