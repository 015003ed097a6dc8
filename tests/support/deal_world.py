"""CRM deals and project templates for the project set-up tests: rows, landing, set-up runs."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from connectors.erp.base import ErpTarget
from posting.deal_setup import DealSetupResult, run_deal_setup
from staging_models.db import StagingDB
from tests.support.staging_helpers import NOW, World

ROOT = Path(__file__).resolve().parent.parent.parent

TEMPLATES = [
    dict(template_code="CONSULT", task_code="DISC", task_name="Discovery", billable="true"),
    dict(template_code="CONSULT", task_code="DELIV", task_name="Delivery", billable="true"),
    dict(template_code="CONSULT", task_code="PM", task_name="Project management", billable="false"),
    dict(template_code="AUDIT", task_code="FIELD", task_name="Fieldwork", billable="true"),
]


def deal(**kw: str) -> dict[str, str]:
    """A won deal of the US01 entity (USD) on the CONSULT template; `kw` overrides."""
    base = dict(
        deal_id="D100",
        deal_name="Acme ERP rollout",
        stage="won",
        won_at="2026-11-18T10:00:00Z",
        customer_id="C7",
        customer_name="Acme Corp",
        legal_entity="US01",
        currency="USD",
        billing_method="time_and_materials",
        contract_value="120000.00",
        budget_hours="800",
        start_date="2026-12-01",
        end_date="2027-05-31",
        project_manager="Ann Lee",
        template_code="CONSULT",
        updated_at="2026-11-18T10:00:00Z",
    )
    return {**base, **kw}


class DealWorld(World):
    """The staging helpers' PSA world plus templates and deals, and set-up runs."""

    def __init__(self, db: StagingDB, folder: Path) -> None:
        super().__init__(db, folder / "in")
        self.outbound = folder / "outbound"
        self.clock = NOW

    def with_templates(self) -> DealWorld:
        self.master()
        self.land("project_templates", TEMPLATES)
        return self

    def deals(self, *rows: dict[str, str]) -> DealWorld:
        self.land("crm_deals", list(rows))
        self.validate()
        return self

    def set_up(self, erp: ErpTarget, **kw) -> DealSetupResult:
        self.clock += timedelta(minutes=1)
        return run_deal_setup(self.db, erp, self.outbound, now=self.clock, **kw)

    def setups(self):
        return self.db.query_df("SELECT * FROM deal_setups ORDER BY deal_id")


def run_child(db: StagingDB, erp_url: str, outbound: Path, step: str, now: datetime) -> int:
    """Run the set-up in a child process that SIGKILLs itself at `step`; its exit code."""
    db.engine.dispose()  # DuckDB: one process holds the file at a time
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.support.deal_child",
            db.url,
            erp_url,
            str(outbound),
            step,
            now.isoformat(),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode in (0, -9), proc.stderr[-2000:]
    return proc.returncode
