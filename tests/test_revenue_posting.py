"""Revenue windows (`posting.revenue`) into the SQL interface ERP, on DuckDB and PostgreSQL:
balanced journals per legal entity and period, versions and reversals on change, back-dated
corrections as adjustments in the open period, WIP accruals that reverse and net to zero."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal as D

import pandas as pd
import pytest

from connectors.erp.sql_interface import SqlInterfaceTarget
from posting.revenue import RevenueConfig, run_revenue_window
from staging_models.ledger_tables import ledger_rows
from tests.support.posting_helpers import PostingEnv
from tests.support.revenue_world import RevenueWorld, entry

pytest_plugins = ["tests.support.posting_fixtures"]


def _no_wait(fn):
    return fn()


def window(env: PostingEnv, as_of: str, erp: SqlInterfaceTarget | None = None, **kw):
    config = RevenueConfig(as_of=date.fromisoformat(as_of), operator="test", **kw)
    return run_revenue_window(env.db, erp or env.erp, config, call=_no_wait)


def journal_lines(erp: SqlInterfaceTarget) -> pd.DataFrame:
    return erp.read_journal_lines(date(1900, 1, 1), date(2999, 12, 31))


def assert_balanced(lines: pd.DataFrame) -> None:
    """Every journal: debits = credits, to the cent."""
    for ext, g in lines.groupby("external_id"):
        assert sum(g["debit"], D(0)) == sum(g["credit"], D(0)), ext


def net(lines: pd.DataFrame, role_accounts: dict[str, str], **where) -> dict:
    """Net (debit - credit) per (project, account) of the lines matching `where`."""
    out: dict = defaultdict(lambda: D(0))
    sel = lines
    for k, v in where.items():
        sel = sel[sel[k] == v]
    for r in sel.itertuples():
        out[(r.project_code, r.account_code)] += r.debit - r.credit
    return {k: v for k, v in out.items() if v != 0}


def revenue_by_project(lines: pd.DataFrame, **where) -> dict[str, D]:
    """Revenue (credits - debits on account 4000) per project."""
    sel = lines[(lines["account_code"] == "4000")]
    for k, v in where.items():
        sel = sel[sel[k] == v]
    out: dict[str, D] = defaultdict(lambda: D(0))
    for r in sel.itertuples():
        out[r.project_code] += r.credit - r.debit
    return {k: v for k, v in out.items() if v != 0}


@pytest.fixture
def world(posting_env: PostingEnv) -> RevenueWorld:
    return RevenueWorld(posting_env.db, posting_env.tmp_path)


def test_one_balanced_journal_per_entity_and_period(
    posting_env: PostingEnv, world: RevenueWorld
) -> None:
    result = window(posting_env, "2026-10-31")
    assert result.status == "completed", result.message
    lines = journal_lines(posting_env.erp)
    assert_balanced(lines)
    revenue = lines[lines["journal_type"] == "revenue"]
    assert sorted(revenue["external_id"].unique()) == [
        "jnl:US01:2026-09:USD:v1:post",
        "jnl:US01:2026-10:USD:v1:post",
    ]
    assert revenue_by_project(revenue, period="2026-09") == {
        "FC": D("1200.00"),
        "FF": D("4285.71"),
        "MS": D("5000.00"),
        "TM": D("1499.99"),
    }
    assert revenue_by_project(revenue, period="2026-10") == {
        "FC": D("300.00"),
        "FF": D("5142.86"),
        "MS": D("7500.00"),
        "TM": D("1125.00"),
    }
    # Dr WIP (1460) / Cr revenue (4000), dated the period's last day
    sep = revenue[revenue["period"] == "2026-09"]
    assert set(sep["journal_date"]) == {date(2026, 9, 30)}
    assert sep[sep["account_code"] == "1460"]["debit"].sum() == D("11985.70")
    # A second window changes nothing: exactly once
    again = window(posting_env, "2026-10-31")
    assert again.counts["journals_planned"] == 0
    assert len(journal_lines(posting_env.erp)) == len(lines)


def test_wip_accrual_reverses_next_period_and_nets_to_zero(
    posting_env: PostingEnv, world: RevenueWorld
) -> None:
    window(posting_env, "2026-10-31")
    lines = journal_lines(posting_env.erp)
    acr = lines[lines["journal_type"] == "wip_accrual"]
    # September has ended by 31 October: its accrual (post 30 Sep, reversal 1 Oct)
    assert sorted(acr["external_id"].unique()) == [
        "acr:US01:2026-09:USD:v1:post",
        "acr:US01:2026-09:USD:v1:rev",
    ]
    post = acr[acr["kind"] == "post"]
    rev = acr[acr["kind"] == "reversal"]
    assert set(post["journal_date"]) == {date(2026, 9, 30)} and set(post["period"]) == {"2026-09"}
    assert set(rev["journal_date"]) == {date(2026, 10, 1)} and set(rev["period"]) == {"2026-10"}
    # WIP = recognized - invoiced: unbilled receivable (1450) for TM, FC, MS; FF billed
    # 6,000.00 ahead of 4,285.71 earned: 1,714.29 deferred revenue (2900)
    assert net(post, {}) == {
        ("FC", "1450"): D("1200.00"),
        ("FC", "1460"): D("-1200.00"),
        ("FF", "1460"): D("1714.29"),
        ("FF", "2900"): D("-1714.29"),
        ("MS", "1450"): D("5000.00"),
        ("MS", "1460"): D("-5000.00"),
        ("TM", "1450"): D("1499.99"),
        ("TM", "1460"): D("-1499.99"),
    }
    assert net(acr, {}) == {}  # the pair nets to zero
    assert_balanced(acr)
    # Re-run in November: October's accrual is added, September's is not posted again
    window(posting_env, "2026-11-05")
    window(posting_env, "2026-11-05")
    acr = journal_lines(posting_env.erp).query("journal_type == 'wip_accrual'")
    assert sorted(acr["external_id"].unique()) == [
        "acr:US01:2026-09:USD:v1:post",
        "acr:US01:2026-09:USD:v1:rev",
        "acr:US01:2026-10:USD:v1:post",
        "acr:US01:2026-10:USD:v1:rev",
    ]


def test_back_dated_correction_after_close_lands_in_the_open_period(
    posting_env: PostingEnv, world: RevenueWorld
) -> None:
    window(posting_env, "2026-10-31")
    posting_env.erp.set_period("US01", "2026-09", False)  # September closed
    world.add_entries(entry("TM-2", "TM", "2026-09-11", "4.25", "133.33"))  # was 2.25 h
    result = window(posting_env, "2026-10-31")
    assert result.status == "completed", result.message
    lines = journal_lines(posting_env.erp)
    assert_balanced(lines)
    revenue = lines[lines["journal_type"] == "revenue"]
    # September's journal is untouched; October's is reversed and posted again with the
    # difference (566.65 - 299.99 = 266.66) on top of its own 1,125.00
    assert sorted(revenue["external_id"].unique()) == [
        "jnl:US01:2026-09:USD:v1:post",
        "jnl:US01:2026-10:USD:v1:post",
        "jnl:US01:2026-10:USD:v1:rev",
        "jnl:US01:2026-10:USD:v2:post",
    ]
    assert revenue_by_project(revenue, period="2026-09")["TM"] == D("1499.99")
    assert revenue_by_project(revenue, period="2026-10")["TM"] == D("1391.66")
    v2 = revenue[revenue["external_id"] == "jnl:US01:2026-10:USD:v2:post"]
    assert revenue_by_project(v2) == {
        "FC": D("300.00"),
        "FF": D("5142.86"),
        "MS": D("7500.00"),
        "TM": D("1391.66"),
    }
    # In total the ERP holds the revenue to date: 1,766.65 + 1,125.00
    assert revenue_by_project(revenue)["TM"] == D("2891.65")


def test_fixed_fee_budget_change_mid_project(posting_env: PostingEnv, world: RevenueWorld) -> None:
    world.add_entries(
        entry("FF-5", "FF", "2026-11-10", "12.50"), entry("FF-6", "FF", "2026-11-11", "12.50")
    )
    window(posting_env, "2026-11-30")  # 80 h of 70: capped at 12,000.00
    for p in ("2026-09", "2026-10"):
        posting_env.erp.set_period("US01", p, False)
    world.raise_budget("100")  # 80 h of 100 h: 9,600.00 to date
    window(posting_env, "2026-11-30")
    revenue = journal_lines(posting_env.erp).query("journal_type == 'revenue'")
    assert_balanced(revenue)
    # Closed September and October keep 4,285.71 and 5,142.86; November gets 9,600.00 -
    # 9,428.57 = 171.43 instead of the capped 2,571.43 (a reversal and version 2)
    assert revenue_by_project(revenue, period="2026-11")["FF"] == D("171.43")
    assert revenue_by_project(revenue)["FF"] == D("9600.00")
    v = revenue[revenue["external_id"] == "jnl:US01:2026-11:USD:v2:post"]
    assert revenue_by_project(v)["FF"] == D("171.43")


def test_ledger_agrees_with_the_erp(posting_env: PostingEnv, world: RevenueWorld) -> None:
    window(posting_env, "2026-10-31")
    led = posting_env.db.query_df(
        f"SELECT external_id, state FROM {ledger_rows('journal_ledger')} l ORDER BY external_id"
    )
    assert set(led["state"]) == {"confirmed"}
    assert set(led["external_id"]) == set(journal_lines(posting_env.erp)["external_id"])


def test_dry_run_posts_nothing(posting_env: PostingEnv, world: RevenueWorld) -> None:
    result = window(posting_env, "2026-10-31", dry_run=True)
    assert result.status == "dry_run" and len(result.plan) == 4
    assert journal_lines(posting_env.erp).empty
    assert posting_env.db.scalar("SELECT COUNT(*) FROM journal_ledger") == 0


def test_revenue_window_job_in_dagster(duck_env: PostingEnv, tmp_path) -> None:
    """The job computes revenue_recognized and posts with the accounts of the posting policy
    (DE01 would take its own; US01 takes `*`); a dry run first posts nothing."""
    from dagster import DagsterInstance, Definitions, RunConfig

    from assets.revenue import (
        REVENUE_ASSET,
        REVENUE_WINDOW_ASSET,
        RevenueConfigFields,
        RevenueWindowConfig,
        revenue_recognized,
        revenue_window,
    )
    from pipelines.posting_jobs import revenue_window_job
    from resources.erp import ErpResource, PostingPolicy
    from resources.staging import StagingDatabase
    from staging_models.db import dispose_all

    RevenueWorld(duck_env.db, tmp_path / "files")
    duck_env.db.engine.dispose()
    duck_env.erp.close()
    defs = Definitions(
        assets=[revenue_recognized, revenue_window],
        jobs=[revenue_window_job],
        resources={
            "staging": StagingDatabase(url=duck_env.db.url),
            "erp": ErpResource(kind="sql", url=duck_env.erp_url),
            "posting_policy": PostingPolicy(
                revenue_accounts={"*": {"revenue": "4100"}, "DE01": {"revenue": "8400"}}
            ),
        },
    )
    job = defs.resolve_job_def("revenue_window_job")

    def run(dry: bool):
        config = RunConfig(
            ops={
                REVENUE_ASSET: RevenueConfigFields(as_of="2026-10-31"),
                REVENUE_WINDOW_ASSET: RevenueWindowConfig(
                    as_of="2026-10-31", dry_run=dry, operator="ana"
                ),
            }
        )
        return job.execute_in_process(instance=instance, run_config=config)

    with DagsterInstance.ephemeral() as instance:
        try:
            dry = run(True)
            assert dry.success
            md = dry.asset_materializations_for_node(REVENUE_WINDOW_ASSET)[0].metadata
            assert md["status"].value == "dry_run"
            real = run(False)
            assert real.success
        finally:
            dispose_all()
    erp = SqlInterfaceTarget(duck_env.erp_url)
    try:
        lines = journal_lines(erp)
    finally:
        erp.close()
    revenue = lines[lines["journal_type"] == "revenue"]
    assert set(revenue["account_code"]) == {"1460", "4100"}
    assert_balanced(lines)


def test_revenue_reconciliation_and_wip_rollforward_tie_to_the_erp(
    posting_env: PostingEnv, world: RevenueWorld, tmp_path
) -> None:
    import openpyxl

    from reconciliation.revenue import (
        CAUGHT_UP,
        REVENUE_HEADERS,
        TIES,
        read_revenue_rollforward,
    )
    from reconciliation.workbook import write_workbook

    window(posting_env, "2026-10-31")
    posting_env.erp.set_period("US01", "2026-09", False)
    world.add_entries(entry("TM-2", "TM", "2026-09-11", "4.25", "133.33"))
    window(posting_env, "2026-10-31")
    # The invoices reach the ERP through a posting window (TM's September time, FF ahead)
    posted = posting_env.window(legal_entities=["US01"])
    assert posted.status == "completed", posted.message
    rf, notes = read_revenue_rollforward(posting_env.db, posting_env.erp)
    assert notes == []
    rows = {(r["project_code"], r["period"]): r for r in rf.to_dict("records")}
    # September was closed before the correction: its own figure differs, October ties
    sep, oct_ = rows[("TM", "2026-09")], rows[("TM", "2026-10")]
    assert sep["status"] == CAUGHT_UP and sep["revenue_diff"] == D("266.66")
    assert oct_["status"] == TIES and oct_["erp_recognized_to_date"] == D("2891.65")
    # Roll-forward: opening + recognized - billed = closing, closing = staging's WIP
    for r in rf.to_dict("records"):
        assert r["opening_wip"] + r["erp_recognized"] - r["erp_billed"] == r["closing_wip"]
    assert oct_["opening_wip"] == D("1499.99")
    assert oct_["erp_billed"] == D("1499.99") and oct_["closing_wip"] == D("1391.66")
    ff = rows[("FF", "2026-09")]
    assert ff["closing_wip"] == D("-1714.29") == ff["staging_wip"]  # deferred revenue
    assert {r["status"] for k, r in rows.items() if k[1] == "2026-10"} == {TIES}
    # The controllers' sheet
    info = write_workbook(
        tmp_path / "rev.xlsx",
        title="t",
        kpis=[],
        totals=pd.DataFrame(),
        aging=pd.DataFrame({"bucket": [], "hours": [], "amount": []}),
        sheets={"Revenue": rf},
        headers=REVENUE_HEADERS,
    )
    ws = openpyxl.load_workbook(info.path)["Revenue"]
    header = [c.value for c in ws[1]]
    assert header[:4] == ["Status", "Legal entity", "Project", "Period"]
    assert ws.max_row == len(rf) + 1


def test_one_journal_per_legal_entity_and_currency_and_scoped_windows(
    posting_env: PostingEnv, world: RevenueWorld
) -> None:
    from tests.support.revenue_world import project

    world.land(
        "employees",
        [
            dict(
                employee_id="E9",
                employee_name="Uwe Roth",
                legal_entity="DE01",
                role="senior",
                cost_rate="70.00",
                currency="EUR",
                active="true",
            )
        ],
    )
    world.land(
        "projects",
        [
            project(
                "DE",
                "time_and_materials",
                legal_entity="DE01",
                currency="EUR",
                customer_id="C2",
                customer_name="Beta GmbH",
            )
        ],
    )
    world.land(
        "project_tasks", [dict(project_code="DE", task_code="T1", task_name="W", billable="true")]
    )
    world.add_entries(
        entry("DE-1", "DE", "2026-10-07", "4.00", "120.00", employee_id="E9", currency="EUR")
    )
    assert world.state("DE-1") == "valid"
    only_de = window(posting_env, "2026-10-31", legal_entities=("DE01",))
    assert only_de.status == "completed", only_de.message
    lines = journal_lines(posting_env.erp)
    assert sorted(lines["external_id"].unique()) == ["jnl:DE01:2026-10:EUR:v1:post"]
    assert revenue_by_project(lines) == {"DE": D("480.00")}
    window(posting_env, "2026-10-31")  # all entities: US01's journals, DE01's unchanged
    lines = journal_lines(posting_env.erp)
    assert set(lines["legal_entity"]) == {"DE01", "US01"}
    assert lines[lines["legal_entity"] == "DE01"]["external_id"].nunique() == 1
    assert_balanced(lines)
