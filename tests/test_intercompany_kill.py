"""SIGKILL of posting windows with intercompany pairs at every step, then a clean run: every
customer line and every intercompany journal is in the ERP exactly once, the ERP nets to the
current version of each entry and of its pair, and the ledgers agree with the ERP (DuckDB
files and PostgreSQL schemas).

Each window runs in its own process (the forkserver of `test_posting_crash`), with all time
lines in one batch, so a child killed on the second batch step dies in the intercompany
batch; or the test kills it after a random delay. Between kills the data moves: an entry
moves to a project of its employee's own entity, another is corrected, new ones arrive.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.erp.sql_interface import SqlInterfaceTarget
from staging_models.db import StagingDB
from staging_models.ledger_tables import ledger_rows
from tests.support.crash_child import KILL_POINTS, run_child
from tests.support.intercompany_world import IntercompanyWorld, fx, ic_entry
from tests.support.kill_schedule import kill_windows
from tests.support.posting_helpers import pg_schema, with_master_data

D = Decimal
FAR = (date(1900, 1, 1), date(2999, 12, 31))
ENV = {
    "STAGEPOST_INTERCOMPANY_POLICY": "intercompany",
    "STAGEPOST_INTERCOMPANY_MARKUP_PERCENT": "10",
}


@pytest.fixture(autouse=True)
def intercompany_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The policy for this process's staging work (`_world`), undone after each test so no
    later test validates under it."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def forkserver() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.support.crash_child"])
    return ctx


def _child(staging_url: str, erp_url: str, kill_at: str | None, kill_on: int) -> None:
    """A posting window under the intercompany policy (the forkserver's environment predates
    the test's), every time line in one batch."""
    os.environ.update(ENV)
    run_child(staging_url, erp_url, kill_at, kill_on, 1000)


def _world(url: str, folder: Path, step: int) -> None:
    """Step 0: master data, rates, six intercompany entries and two of one entity; later steps
    move, correct and add entries between windows."""
    db = StagingDB(url)
    db.init_schema()
    try:
        w = IntercompanyWorld(db, folder)
        w.n = len(list(folder.glob("*.csv")))
        if step == 0:
            w.master()
            w.rates(
                fx("2026-10-12", "1.0851"), fx("2026-10-15", "1.0834"), fx("2026-10-20", "1.0790")
            )
            w.entries(  # one entry a day per employee (the daily 24 hours hold)
                *(
                    ic_entry(f"IC{i}", day=f"2026-10-{12 + i}", hours=f"{i}.25")
                    for i in range(1, 7)
                ),
                ic_entry("OWN1", day="2026-10-21", project="ICDE", rate="140.00"),
                ic_entry("OWN2", project="ICUS", employee="XUS"),
            )
        elif step == 1:  # IC1 moves to its employee's entity; IC2 corrected; IC7 arrives
            w.entries(
                ic_entry(
                    "IC1",
                    day="2026-10-13",
                    project="ICDE",
                    rate="140.00",
                    updated_at="2026-10-21T09:00:00Z",
                ),
                ic_entry("IC2", day="2026-10-14", hours="3.50", updated_at="2026-10-21T09:00:00Z"),
                ic_entry("IC7", day="2026-10-20", hours="6.00"),
            )
        elif step == 2:  # OWN1 moves to a US01 project: it becomes intercompany
            w.entries(
                ic_entry(
                    "OWN1", day="2026-10-21", project="ICUS2", updated_at="2026-10-22T09:00:00Z"
                )
            )
        else:  # IC3 corrected again: a reversal and a new pair for every window
            w.entries(
                ic_entry(
                    "IC3", hours=f"{step % 20 + 1}.75", updated_at=f"2026-11-{step:02d}T09:00:00Z"
                )
            )
        w.validate()
        assert not db.scalar("SELECT COUNT(*) FROM quarantine WHERE status = 'open'")
    finally:
        db.engine.dispose()


def _check(staging_url: str, erp_url: str) -> None:
    db = StagingDB(staging_url)
    erp = SqlInterfaceTarget(erp_url)
    try:
        # Customer lines: each entry nets to its current version's hours
        te = erp.read_time_lines(*FAR)
        assert not te["external_id"].duplicated().any()
        want = db.query_df("SELECT entry_id, hours FROM validated_time_entries")
        got: dict[str, D] = defaultdict(lambda: D(0))
        for r in te.itertuples():
            got[r.entry_id] += r.hours
        assert {k: v for k, v in got.items() if v} == dict(
            zip(want["entry_id"], want["hours"], strict=True)
        )
        # Intercompany: every journal balanced, and per entry and side the ERP's net on the
        # debited account is the current version's figure (none for an entry of one entity)
        lines = erp.read_journal_lines(*FAR)
        ic = lines[lines["journal_type"].isin(["ic_payable", "ic_receivable"])]
        for ext, g in ic.groupby("external_id"):
            assert sum(g["debit"], D(0)) == sum(g["credit"], D(0)), ext
        net: dict = defaultdict(lambda: D(0))
        for r in ic[ic["line_role"].isin(["ic_cost", "ic_receivable"])].itertuples():
            net[(r.journal_id, r.journal_type)] += r.debit - r.credit
        expected = db.query_df(
            """SELECT entry_id, ic_pay_amount, ic_rec_amount FROM validated_time_entries
               WHERE ic_legal_entity IS NOT NULL"""
        )
        want_ic = {}
        for r in expected.itertuples():
            want_ic[(r.entry_id, "ic_payable")] = r.ic_pay_amount
            want_ic[(r.entry_id, "ic_receivable")] = r.ic_rec_amount
        assert {k: v for k, v in net.items() if v} == want_ic
        assert ("IC1", "ic_payable") not in want_ic and ("OWN1", "ic_payable") in want_ic
        # The journal ledger agrees with the ERP: confirmed is what the ERP holds, none sent
        led = db.query_df(
            f"""SELECT external_id, state FROM {ledger_rows("journal_ledger")} l
                WHERE journal_type IN ('ic_payable', 'ic_receivable')"""
        )
        assert set(led.loc[led["state"] == "confirmed", "external_id"]) == set(ic["external_id"])
        assert "sent" not in set(led["state"])
    finally:
        erp.close()
        db.engine.dispose()


def _scenario(staging_url: str, erp_url: str, folder: Path, ctx, runs: int, seed: int) -> list:
    erp = SqlInterfaceTarget(erp_url)
    with_master_data(erp)
    erp.close()
    _world(staging_url, folder, 0)

    def before(run: int) -> tuple:
        if run:  # the data moves between windows
            _world(staging_url, folder, {runs // 3: 1, 2 * runs // 3: 2}.get(run, run + 2))
        return (staging_url, erp_url)

    killed = kill_windows(ctx, _child, runs, seed, before)
    _check(staging_url, erp_url)
    return killed


def test_sigkill_intercompany_window_then_rerun_posts_exactly_once_duckdb(
    tmp_path: Path, forkserver
) -> None:
    killed = _scenario(
        f"duckdb:///{tmp_path / 'staging.duckdb'}",
        f"duckdb:///{tmp_path / 'erp.duckdb'}",
        tmp_path / "files",
        forkserver,
        runs=12,
        seed=20261205,
    )
    assert set(killed) >= set(KILL_POINTS), killed


@pytest.fixture
def pg_urls(pg_available: bool) -> Iterator[tuple[str, str]]:
    with (
        pg_schema(pg_available, "sp_ickill_stg") as staging,
        pg_schema(pg_available, "sp_ickill_erp") as erp,
    ):
        yield staging, erp


def test_sigkill_intercompany_window_then_rerun_posts_exactly_once_postgres(
    pg_urls, tmp_path: Path, forkserver
) -> None:
    staging, erp = pg_urls
    _scenario(staging, erp, tmp_path / "files", forkserver, runs=6, seed=7)
