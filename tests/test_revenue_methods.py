"""Recognized revenue per project and period (`staging_models.revenue`): the worked examples of
docs/revenue.md, checked to the cent on DuckDB and PostgreSQL staging."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from staging_models.db import StagingDB
from tests.support.revenue_world import RevenueWorld, entry


@pytest.fixture
def world(any_db: StagingDB, tmp_path: Path) -> RevenueWorld:
    return RevenueWorld(any_db, tmp_path)


def _figures(rows: dict, project: str, *cols: str) -> list[tuple]:
    return [tuple(r[c] for c in cols) for (p, _), r in sorted(rows.items()) if p == project]


def test_worked_examples_to_the_cent(world: RevenueWorld) -> None:
    assert world.db.scalar("SELECT COUNT(*) FROM quarantine") == 0
    rows = world.revenue("2026-10-31")
    cols = ("period", "recognized_to_date", "period_amount")
    # Time and materials: 8 h x 150.00 + 2.25 h x 133.33 (299.9925 -> 299.99); 7.5 h x 150.00
    assert _figures(rows, "TM", *cols) == [
        ("2026-09", D("1499.99"), D("1499.99")),
        ("2026-10", D("2624.99"), D("1125.00")),
    ]
    # Fixed fee by hours: 12,000.00 x 25/70 = 4,285.714... -> 4,285.71; x 55/70 -> 9,428.57
    assert _figures(rows, "FF", *cols, "progress_to_date", "budget", "percent_complete") == [
        ("2026-09", D("4285.71"), D("4285.71"), D("25"), D("70"), D("35.7143")),
        ("2026-10", D("9428.57"), D("5142.86"), D("55"), D("70"), D("78.5714")),
    ]
    # Fixed fee cost-to-cost: 9,000.00 x 800.00/6,000.00; then 3.3333 h x 60.00 = 199.998 ->
    # 200.00 of cost: 9,000.00 x 1,000.00/6,000.00
    assert _figures(rows, "FC", *cols, "progress_to_date", "percent_complete") == [
        ("2026-09", D("1200.00"), D("1200.00"), D("800"), D("13.3333")),
        ("2026-10", D("1500.00"), D("300.00"), D("1000"), D("16.6667")),
    ]
    # Milestones: on acceptance (M3 is not accepted yet)
    assert _figures(rows, "MS", *cols) == [
        ("2026-09", D("5000.00"), D("5000.00")),
        ("2026-10", D("12500.00"), D("7500.00")),
    ]
    # Non-billable: no revenue
    assert not [k for k in rows if k[0] == "NB"]


def test_wip_is_recognized_minus_invoiced_and_billing_ahead_is_deferred(
    world: RevenueWorld,
) -> None:
    rows = world.revenue("2026-10-31")
    cols = ("period", "invoiced_to_date", "wip")
    assert _figures(rows, "TM", *cols) == [
        ("2026-09", D("0.00"), D("1499.99")),
        ("2026-10", D("1499.99"), D("1125.00")),
    ]
    # 6,000.00 billed in September against 4,285.71 earned: 1,714.29 deferred revenue
    assert _figures(rows, "FF", *cols) == [
        ("2026-09", D("6000.00"), D("-1714.29")),
        ("2026-10", D("6000.00"), D("3428.57")),
    ]


def test_fixed_fee_is_capped_until_the_budget_is_raised(world: RevenueWorld) -> None:
    # 80 h of a 70 h budget
    world.add_entries(
        entry("FF-5", "FF", "2026-11-10", "12.50"), entry("FF-6", "FF", "2026-11-11", "12.50")
    )
    rows = world.revenue("2026-11-30")
    assert rows[("FF", "2026-11")]["percent_complete"] == D("100.0000")
    assert rows[("FF", "2026-11")]["recognized_to_date"] == D("12000.00")
    assert rows[("FF", "2026-11")]["period_amount"] == D("2571.43")

    world.raise_budget("100")  # 80 h of 100 h; every period recomputed with the new budget
    rows = world.revenue("2026-11-30")
    cols = ("period", "recognized_to_date", "period_amount", "percent_complete")
    assert _figures(rows, "FF", *cols) == [
        ("2026-09", D("3000.00"), D("3000.00"), D("25.0000")),
        ("2026-10", D("6600.00"), D("3600.00"), D("55.0000")),
        ("2026-11", D("9600.00"), D("3000.00"), D("80.0000")),
    ]


def test_a_back_dated_correction_changes_its_own_period(world: RevenueWorld) -> None:
    world.add_entries(entry("TM-2", "TM", "2026-09-11", "4.25", "133.33"))  # was 2.25 h
    rows = world.revenue("2026-10-31")
    # 4.25 h x 133.33 = 566.6525 -> 566.65
    assert rows[("TM", "2026-09")]["recognized_to_date"] == D("1766.65")
    assert rows[("TM", "2026-10")]["period_amount"] == D("1125.00")


def test_the_table_is_rewritten_whole(world: RevenueWorld) -> None:
    world.revenue("2026-11-30")
    assert world.db.scalar("SELECT COUNT(*) FROM revenue_recognized") == 12
    world.revenue("2026-10-31")
    assert world.db.scalar("SELECT MAX(period) FROM revenue_recognized") == "2026-10"
    assert world.db.scalar("SELECT COUNT(*) FROM revenue_recognized") == 8


def test_a_fixed_fee_billed_project_without_revenue_figures_still_posts_its_time(
    world: RevenueWorld,
) -> None:
    """Exports from before revenue recognition: a project billed as a fixed fee with no
    contract value or budget is valid (its time posts) and left out of revenue; one that
    gives some revenue figures must give them all."""
    from tests.support.revenue_world import project

    world.land(
        "projects",
        [
            project("OLD", "fixed_fee"),
            project("HALF", "fixed_fee", contract_value="5000.00"),
        ],
    )
    world.land(
        "project_tasks",
        [dict(project_code="OLD", task_code="T1", task_name="W", billable="true")],
    )
    world.add_entries(entry("OLD-1", "OLD", "2026-09-10", "3.00"))
    assert world.state("OLD", "projects") == "valid"
    assert world.state("OLD-1") == "valid"
    assert world.codes("HALF", "projects") == {"PRJ_FIXED_FEE_NO_BUDGET"}
    rows = world.revenue("2026-10-31")
    assert not [k for k in rows if k[0] in ("OLD", "HALF")]
