"""SIGKILL at any point of a posting window, many times over, then a clean run: every line is
in the ERP exactly once and the ledger agrees with the ERP.

Each window runs in its own process (multiprocessing forkserver, modules preloaded)
against a staging database and an ERP database that survive it: DuckDB files on
disk, or PostgreSQL schemas. The process kills itself with SIGKILL at a fault point
(after planning, after marking a batch sent, after the ERP committed a post but
before the answer came back, after the answer but before the ledger update, after
the ledger update), or the test kills it after a random delay. Between kills the
staging data changes (corrections, deletions, quarantined versions, a changed and a
cancelled invoice) so that reversals are planned and interrupted too.
"""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.erp.sql_interface import SqlInterfaceTarget
from staging_models.db import StagingDB
from staging_models.ledger_tables import ledger_rows
from tests.support.crash_child import KILL_POINTS, run_child
from tests.support.posting_helpers import (
    correct,
    pg_schema,
    stage_entries,
    stage_invoice,
    with_master_data,
)

D = Decimal
N_ENTRIES = 160
FAR = (date(2000, 1, 1), date(2100, 12, 31))


@pytest.fixture(scope="module")
def forkserver() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.support.crash_child"])
    return ctx


def _initial_entries() -> list[dict]:
    rows = []
    for i in range(N_ENTRIES):
        us = i % 10 == 9
        rows.append(
            {
                "entry_id": f"E{i:04d}",
                "legal_entity": "US01" if us else "DE01",
                "project_code": f"UP{i % 3 + 1}" if us else f"P{i % 3 + 1}",
                "currency": "USD" if us else "EUR",
                "employee_id": f"E{i % 5 + 1}",
                "task_code": "T2" if i % 4 == 0 else "T1",
                "work_date": date(2026, 11, 1 + i % 28),
                "hours": D(f"{1 + i % 8}.25"),
            }
        )
    return rows


def _with_staging(url: str, change) -> None:
    """Open staging, apply a change, close it again (a DuckDB file admits one process)."""
    db = StagingDB(url)
    db.init_schema()
    try:
        change(db)
    finally:
        db.engine.dispose()


def _first_changes(db: StagingDB) -> None:
    for i in range(0, 40):
        correct(db, f"E{i:04d}", hours=D("0.5"), description="corrected once")
    stage_entries(
        db,
        [{"entry_id": f"E{i:04d}", "version": 2, "state": "not_postable"} for i in range(40, 60)],
    )
    stage_entries(
        db, [{"entry_id": f"E{i:04d}", "version": 2, "state": "quarantined"} for i in range(60, 70)]
    )
    stage_invoice(db, "INV1", [{"line_no": 2, "amount": D("75.00")}])
    stage_invoice(db, "INV2", [{"line_no": 1, "amount": D("40.00")}], status="cancelled")


def _second_changes(db: StagingDB) -> None:
    for i in list(range(0, 10)) + list(range(100, 115)):
        correct(db, f"E{i:04d}", hours=D("2.75"), description="corrected again")


def _expected_net(db: StagingDB) -> tuple[dict[str, Decimal], set[str]]:
    """Net hours per entry the ERP must show, and the quarantined entries (either v1 or nothing)."""
    cur = db.query_df(
        "SELECT row_key, version, state, hours FROM stg_time_entries WHERE is_current"
    )
    valid = cur[cur["state"] == "valid"]
    return dict(zip(valid["row_key"], valid["hours"], strict=True)), set(
        cur.loc[cur["state"] == "quarantined", "row_key"]
    )


def _check(staging_url: str, erp_url: str, quarantined_v1_hours: dict[str, Decimal]) -> None:
    db = StagingDB(staging_url)
    erp = SqlInterfaceTarget(erp_url)
    try:
        lines = erp.read_time_lines(*FAR)
        assert lines["external_id"].is_unique
        net = lines.groupby("entry_id")["hours"].apply(lambda s: sum(s, D(0)))
        net = {k: v for k, v in net.items() if v != 0}
        expected, quarantined = _expected_net(db)
        for e in quarantined:  # the old line stays if it was posted before the quarantine
            if e in net:
                assert net.pop(e) == quarantined_v1_hours[e]
        assert net == expected
        # Each non-current post is reversed exactly once; reversals point at real posts.
        posts = lines[lines["kind"] == "post"]
        revs = lines[lines["kind"] == "reversal"]
        assert revs["reverses_external_id"].is_unique
        assert set(revs["reverses_external_id"]) <= set(posts["external_id"])
        # The ledger agrees with the ERP, and nothing is left in flight.
        led = db.query_df(f"SELECT external_id, state FROM {ledger_rows('posting_ledger')} l")
        assert not set(led["state"]) & {"planned", "sent"}
        assert set(led.loc[led["state"] == "confirmed", "external_id"]) == set(lines["external_id"])
        invoices = erp.read_invoices(*FAR)
        assert invoices["external_id"].is_unique
        totals = invoices.groupby("invoice_id")["total_amount"].apply(lambda s: sum(s, D(0)))
        # INV2 was cancelled: credited if it had been posted, else never posted.
        assert {k: v for k, v in totals.items() if v} == {"INV1": D("175.00"), "INV3": D("30.00")}
        inv_led = db.query_df(f"SELECT external_id, state FROM {ledger_rows('invoice_ledger')} l")
        assert set(inv_led["state"]) <= {"confirmed", "void"}  # void: superseded before sent
        confirmed = inv_led.loc[inv_led["state"] == "confirmed", "external_id"]
        assert set(confirmed) == set(invoices["external_id"])
        windows = db.query_df("SELECT status FROM posting_windows")["status"]
        assert "running" not in set(windows)
    finally:
        erp.close()
        db.engine.dispose()


def _crash_runs(staging_url: str, erp_url: str, ctx, runs: int, seed: int) -> list[str]:
    """Run `runs` windows that each die at some point; returns the points that killed one.

    Every kill point comes up before any repeats; small batches (10 lines) give each
    window many batches, so kills land early, midway and late."""
    rng = random.Random(seed)
    points = [*KILL_POINTS, "delay"]
    schedule: list[str] = []
    while len(schedule) < runs:
        rng.shuffle(points)
        schedule += points
    killed = []
    for run, choice in enumerate(schedule[:runs]):
        if run == runs // 3:
            _with_staging(staging_url, _first_changes)
        if run == 2 * runs // 3:
            _with_staging(staging_url, _second_changes)
        kill_at = None if choice == "delay" else choice
        # Early windows have plenty of batches: sometimes die at the second one.
        late = run >= runs // 2
        kill_on = rng.randint(1, 2) if choice.startswith(("batch", "erp")) and not late else 1
        p = ctx.Process(target=run_child, args=(staging_url, erp_url, kill_at, kill_on, 10))
        p.start()
        p.join(rng.uniform(0.05, 0.8) if choice == "delay" else 60)
        if p.is_alive():
            p.kill()  # SIGKILL
            p.join(10)
        assert p.exitcode is not None, "a posting child did not end"
        assert p.exitcode in (0, -9), f"child failed with exit code {p.exitcode}"
        if p.exitcode == -9:
            killed.append(choice)
    return killed


def _prepare(staging_url: str, erp_url: str) -> dict[str, Decimal]:
    erp = SqlInterfaceTarget(erp_url)
    with_master_data(erp)
    erp.close()

    def initial(db: StagingDB) -> None:
        stage_entries(db, _initial_entries())
        stage_invoice(
            db,
            "INV1",
            [{"line_no": 1, "amount": D("100.00")}, {"line_no": 2, "amount": D("50.00")}],
        )
        stage_invoice(db, "INV2", [{"line_no": 1, "amount": D("40.00")}])
        stage_invoice(db, "INV3", [{"line_no": 1, "amount": D("30.00")}])

    _with_staging(staging_url, initial)
    return {r["entry_id"]: r["hours"] for r in _initial_entries()}


def _scenario(staging_url: str, erp_url: str, ctx, runs: int, seed: int, every_point: bool) -> None:
    v1_hours = _prepare(staging_url, erp_url)
    killed = _crash_runs(staging_url, erp_url, ctx, runs, seed)
    # A kill point is not reached when the window has nothing (left) to send there.
    assert len(killed) >= runs // 2, f"only {killed} of {runs} windows were killed"
    if every_point:
        assert set(killed) >= set(KILL_POINTS), killed
    final = ctx.Process(target=run_child, args=(staging_url, erp_url, None, 1, 20))
    final.start()
    final.join(120)
    assert final.exitcode == 0
    _check(staging_url, erp_url, v1_hours)


def test_sigkill_anywhere_then_rerun_posts_exactly_once_duckdb(tmp_path: Path, forkserver) -> None:
    _scenario(
        f"duckdb:///{tmp_path / 'staging.duckdb'}",
        f"duckdb:///{tmp_path / 'erp.duckdb'}",
        forkserver,
        runs=15,
        seed=20261122,
        every_point=True,
    )


@pytest.fixture
def pg_urls(pg_available: bool) -> Iterator[tuple[str, str]]:
    with (
        pg_schema(pg_available, "sp_crash_stg") as staging,
        pg_schema(pg_available, "sp_crash_erp") as erp,
    ):
        yield staging, erp


def test_sigkill_anywhere_then_rerun_posts_exactly_once_postgres(pg_urls, forkserver) -> None:
    staging, erp = pg_urls
    _scenario(staging, erp, forkserver, runs=6, seed=7, every_point=False)


def test_expected_totals_helper_sees_quarantine(tmp_path: Path) -> None:
    """The checker itself: a quarantined current version is reported, not expected."""
    url = f"duckdb:///{tmp_path / 's.duckdb'}"

    def stage(db: StagingDB) -> None:
        stage_entries(db, [{"entry_id": "A"}, {"entry_id": "B"}])
        stage_entries(db, [{"entry_id": "B", "version": 2, "state": "quarantined"}])
        expected, quarantined = _expected_net(db)
        assert expected == {"A": D("7.5000")} and quarantined == {"B"}

    _with_staging(url, stage)
