"""Intercompany pairs into a real Tryton 8.2 (docs/intercompany.md): the customer time line plus
a posted, balanced `account.move` per side, reversed together when the entry moves to a
project of its employee's own entity; a re-run posts nothing.

The test template has one company, so both legal entities map to it and book in its currency
(USD): this checks Tryton's side of the pair (moves, accounts by code, Post, reversal), the
conversion is the SQL tests' (tests/test_intercompany_posting.py)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal as D
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from posting.window import RetryPolicy, WindowConfig, WindowResult, run_window
from staging_models.db import StagingDB
from tests.support.intercompany_world import IntercompanyWorld, ic_entry, project

if TYPE_CHECKING:
    from connectors.erp.tryton import TrytonTarget
    from tests.support.tryton_fixtures import TrytonServer

pytestmark = pytest.mark.slow
FAR = (dt.date(2000, 1, 1), dt.date(2100, 12, 31))


def _window(db: StagingDB, erp: TrytonTarget) -> WindowResult:
    return run_window(
        db,
        erp,
        WindowConfig(dry_run=False, retry=RetryPolicy(attempts=2, base_delay=0)),
        sleep=lambda s: None,
    )


def test_intercompany_pair_in_tryton(
    tryton_server: TrytonServer,
    duck_db: StagingDB,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STAGEPOST_INTERCOMPANY_POLICY", "intercompany")
    monkeypatch.setenv("STAGEPOST_INTERCOMPANY_MARKUP_PERCENT", "10")
    company = next(iter(tryton_server.legal_entities.values()))
    tryton_server.legal_entities = {"US01": company, "CA01": company}
    target = tryton_server.target()
    world = IntercompanyWorld(duck_db, tmp_path / "files")
    world.land(
        "employees",
        [
            dict(
                employee_id="XCA",
                employee_name="Claire Roy",
                legal_entity="CA01",
                role="consultant",
                cost_rate="50.00",
                currency="USD",
                active="true",
            )
        ],
    )
    world.land("projects", [project("ICUS", "US01", "USD"), project("ICCA", "CA01", "USD")])
    world.land(
        "project_tasks",
        [
            dict(project_code=p, task_code="T1", task_name="Work", billable="true")
            for p in ("ICUS", "ICCA")
        ],
    )
    world.entries(ic_entry(employee="XCA"))
    world.validate()
    first = _window(duck_db, target)
    assert first.status == "completed", first.message
    assert first.counts["ic_confirmed"] == 2 and first.counts["ic_rejected"] == 0, first.counts
    lines = target.read_journal_lines(*FAR)
    ic = lines[lines["journal_type"].isin(["ic_payable", "ic_receivable"])]
    assert sorted(ic["external_id"].unique()) == ["ic:IC1:v1:pay", "ic:IC1:v1:rec"]
    net: dict = defaultdict(lambda: D(0))
    for ext, g in ic.groupby("external_id"):  # Tryton posted each: balanced to the cent
        assert sum(g["debit"], D(0)) == sum(g["credit"], D(0)), ext
    for r in ic.itertuples():
        net[r.account_code] += r.debit - r.credit
    # 8 h x (50.00 + 10 %) = 440.00 on each side
    assert dict(net) == {
        "5400": D("440.00"),
        "2400": D("-440.00"),
        "1400": D("440.00"),
        "4400": D("-440.00"),
    }
    posted = target.rpc.model(
        "account.move",
        "search_count",
        [("stagepost_type", "like", "ic_%"), ("state", "=", "posted")],
    )
    assert posted == 2
    assert _window(duck_db, target).counts.get("ic_journals_planned", 0) == 0  # exactly once

    # Moved to the employee's own entity: customer line corrected, the pair reversed together
    world.entries(ic_entry(employee="XCA", project="ICCA", updated_at="2026-10-20T09:00:00Z"))
    world.validate()
    moved = _window(duck_db, target)
    assert moved.counts["ic_confirmed"] == 2 and moved.counts["ic_rejected"] == 0, moved.counts
    ic = target.read_journal_lines(*FAR)
    ic = ic[ic["journal_type"].isin(["ic_payable", "ic_receivable"])]
    assert sorted(ic["external_id"].unique()) == [
        "ic:IC1:v1:pay",
        "ic:IC1:v1:pay:rev",
        "ic:IC1:v1:rec",
        "ic:IC1:v1:rec:rev",
    ]
    net = defaultdict(lambda: D(0))
    for r in ic.itertuples():
        net[r.account_code] += r.debit - r.credit
    assert set(net.values()) == {D(0)}  # the ERP nets to the current version: no pair
