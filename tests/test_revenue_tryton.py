"""Revenue windows into a real Tryton 8.2: journals as posted `account.move`s with their lines,
accounts looked up by code, each balanced; an accrual and its reversal net to zero; a re-run
posts nothing; a closed period's journal is never rewritten."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal as D
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from posting.revenue import RevenueConfig, run_revenue_window
from staging_models.db import StagingDB
from tests.support.revenue_world import RevenueWorld, entry

if TYPE_CHECKING:
    from tests.support.tryton_fixtures import TrytonServer

pytestmark = pytest.mark.slow
FAR = (dt.date(2000, 1, 1), dt.date(2100, 12, 31))


def _revenue(lines) -> dict[str, D]:
    out: dict[str, D] = defaultdict(lambda: D(0))
    for r in lines[lines["account_code"] == "4000"].itertuples():
        out[r.project_code] += r.credit - r.debit
    return dict(out)


def test_revenue_journals_and_accruals_in_tryton(
    tryton_server: TrytonServer, duck_db: StagingDB, tmp_path: Path
) -> None:
    tryton_server.legal_entities = {"US01": tryton_server.legal_entities.popitem()[1]}
    target = tryton_server.target()
    world = RevenueWorld(duck_db, tmp_path / "files")

    def window(as_of: str):
        config = RevenueConfig(as_of=dt.date.fromisoformat(as_of), operator="test")
        return run_revenue_window(duck_db, target, config, call=lambda fn: fn())

    first = window("2026-10-31")
    assert first.status == "completed" and first.counts["rejected"] == 0, first.counts
    lines = target.read_journal_lines(*FAR)
    for ext, g in lines.groupby("external_id"):  # Tryton posted each: balanced to the cent
        assert sum(g["debit"], D(0)) == sum(g["credit"], D(0)), ext
    assert sorted(lines["external_id"].unique()) == [
        "acr:US01:2026-09:USD:v1:post",
        "acr:US01:2026-09:USD:v1:rev",
        "jnl:US01:2026-09:USD:v1:post",
        "jnl:US01:2026-10:USD:v1:post",
    ]
    assert _revenue(lines) == {
        "FC": D("1500.00"),
        "FF": D("9428.57"),
        "MS": D("12500.00"),
        "TM": D("2624.99"),
    }
    acr = lines[lines["journal_type"] == "wip_accrual"]
    rev = acr[acr["kind"] == "reversal"]
    assert set(rev["journal_date"]) == {dt.date(2026, 10, 1)}
    net: dict = defaultdict(lambda: D(0))
    for r in acr.itertuples():
        net[r.account_code] += r.debit - r.credit
    assert set(net.values()) == {D(0)}  # the pair nets to zero
    moves = target.rpc.model("account.move", "search_count", [("state", "=", "posted")])
    assert moves == 4

    assert window("2026-10-31").counts["journals_planned"] == 0  # exactly once

    # September closes in Tryton; a back-dated correction lands in October (v1 reversed, v2)
    (sep,) = target.rpc.model("account.period", "search", [("name", "=", "2026-09")], 0, 1, None)
    target.rpc.model("account.period", "close", [sep])
    world.add_entries(entry("TM-2", "TM", "2026-09-11", "4.25", "133.33"))
    again = window("2026-10-31")
    assert again.counts["rejected"] == 0, again.counts
    lines = target.read_journal_lines(*FAR)
    assert _revenue(lines)["TM"] == D("2891.65")
    sep_lines = lines[lines["external_id"] == "jnl:US01:2026-09:USD:v1:post"]
    assert _revenue(sep_lines)["TM"] == D("1499.99")
    assert {"jnl:US01:2026-10:USD:v1:rev", "jnl:US01:2026-10:USD:v2:post"} <= set(
        lines["external_id"]
    )
    target.close()


def test_an_account_missing_in_trytons_chart_rejects_the_journal(
    tryton_server: TrytonServer, duck_db: StagingDB, tmp_path: Path
) -> None:
    tryton_server.legal_entities = {"US01": tryton_server.legal_entities.popitem()[1]}
    target = tryton_server.target()
    RevenueWorld(duck_db, tmp_path / "files")
    config = RevenueConfig(
        as_of=dt.date(2026, 9, 30), operator="test", accounts={"US01": {"revenue": "9999"}}
    )
    result = run_revenue_window(duck_db, target, config, call=lambda fn: fn())
    assert result.counts["rejected"] == 1 and result.counts["confirmed"] == 0
    (msg,) = duck_db.query_df("SELECT erp_message FROM journal_ledger WHERE state = 'rejected'")[
        "erp_message"
    ]
    assert msg.startswith("Account(s) 9999 do not exist in Tryton's chart")
    assert target.rpc.model("account.move", "search_count", []) == 0
    # Fixed in the configuration: the next window posts it (a new plan, same external id)
    fixed = RevenueConfig(as_of=dt.date(2026, 9, 30), operator="test")
    again = run_revenue_window(duck_db, target, fixed, call=lambda fn: fn())
    assert again.counts["confirmed"] == 1, again.counts
    assert target.rpc.model("account.move", "search_count", [("state", "=", "posted")]) == 1
    target.close()
