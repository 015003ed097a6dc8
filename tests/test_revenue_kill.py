"""SIGKILL of a revenue window at every step, many times over, then a clean run: every journal
is in the ERP exactly once, the ERP holds each project's revenue to date, each ended period's
accrual pair once, and the ledger agrees with the ERP (DuckDB files and PostgreSQL schemas).

Each window runs in its own process (the forkserver of `test_posting_crash`, modules
preloaded), one journal per batch, and kills itself after planning, after marking a batch
sent, after the ERP committed a batch but before the answer came back, after the answer, or
after the ledger update; or the test kills it after a random delay. Between kills the data
and the window's date move on: a back-dated correction after September closed, a budget
raise, November's time.
"""

from __future__ import annotations

import multiprocessing
from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.erp.sql_interface import SqlInterfaceTarget
from staging_models.db import StagingDB
from staging_models.ledger_tables import ledger_rows
from staging_models.revenue import compute_revenue
from tests.support.crash_child import KILL_POINTS, run_revenue_child
from tests.support.kill_schedule import kill_windows
from tests.support.posting_helpers import pg_schema
from tests.support.revenue_world import RevenueWorld, entry
from tests.support.staging_helpers import World

D = Decimal
FAR = (date(1900, 1, 1), date(2999, 12, 31))


@pytest.fixture(scope="module")
def forkserver() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.support.crash_child"])
    return ctx


def _world(url: str, folder: Path, change=None) -> None:
    """The examples landed (no `change`), or `change` applied to them, between two windows."""
    db = StagingDB(url)
    db.init_schema()
    try:
        if change is None:
            RevenueWorld(db, folder)
        else:
            w = RevenueWorld.__new__(RevenueWorld)
            World.__init__(w, db, folder)
            w.n = len(list(folder.glob("*.csv")))  # new files, new names
            change(w)
    finally:
        db.engine.dispose()


def _september_closes(erp_url: str) -> None:
    erp = SqlInterfaceTarget(erp_url)
    erp.set_period("US01", "2026-09", False)
    erp.close()


def _changes(w: RevenueWorld) -> None:
    w.add_entries(
        entry("TM-2", "TM", "2026-09-11", "4.25", "133.33"),
        entry("FF-5", "FF", "2026-11-10", "12.50"),
        entry("FF-6", "FF", "2026-11-11", "12.50"),
    )


def _budget(w: RevenueWorld) -> None:
    w.raise_budget("100")


def _check(staging_url: str, erp_url: str, as_of: date) -> None:
    db = StagingDB(staging_url)
    erp = SqlInterfaceTarget(erp_url)
    try:
        lines = erp.read_journal_lines(*FAR)
        for ext, g in lines.groupby("external_id"):  # every journal balanced to the cent
            assert sum(g["debit"], D(0)) == sum(g["credit"], D(0)), ext
        # Revenue in the ERP = revenue to date per project, to the cent
        compute_revenue(db, as_of)
        want = db.query_df(
            "SELECT project_code, recognized_to_date FROM revenue_recognized WHERE period = :p",
            {"p": as_of.strftime("%Y-%m")},
        )
        got: dict[str, D] = defaultdict(lambda: D(0))
        rev = lines[(lines["journal_type"] == "revenue") & (lines["account_code"] == "4000")]
        for r in rev.itertuples():
            got[r.project_code] += r.credit - r.debit
        assert dict(got) == dict(
            zip(want["project_code"], want["recognized_to_date"], strict=True)
        ), got
        # One live version per journal; each ended period's accrual once, with its reversal
        heads = lines.drop_duplicates("external_id")
        posts = heads[(heads["kind"] == "post") & (heads["journal_type"] == "revenue")]
        reversed_ = {e.rsplit(":", 1)[0] for e in heads["external_id"] if e.endswith(":rev")}
        live = [e for e in posts["external_id"] if e.rsplit(":", 1)[0] not in reversed_]
        assert len(live) == len({e.split(":v")[0] for e in live}), live
        acr = heads[heads["journal_type"] == "wip_accrual"]
        assert sorted(acr["external_id"]) == [
            "acr:US01:2026-09:USD:v1:post",
            "acr:US01:2026-09:USD:v1:rev",
            "acr:US01:2026-10:USD:v1:post",
            "acr:US01:2026-10:USD:v1:rev",
        ]
        # The ledger agrees with the ERP: what it holds confirmed, the ERP has, and nothing else
        led = db.query_df(f"SELECT external_id, state FROM {ledger_rows('journal_ledger')} l")
        confirmed = set(led.loc[led["state"] == "confirmed", "external_id"])
        assert confirmed == set(heads["external_id"])
        assert "sent" not in set(led["state"])
        windows = db.query_df("SELECT status FROM posting_windows")["status"]
        assert "running" not in set(windows)
    finally:
        erp.close()
        db.engine.dispose()


#: The windows' as-of date: October's end, then November's once September has closed.
AS_OF = {False: "2026-10-31", True: "2026-11-30"}


def _scenario(staging_url: str, erp_url: str, folder: Path, ctx, runs: int, seed: int) -> list[str]:
    SqlInterfaceTarget(erp_url).close()
    _world(staging_url, folder)

    def before(run: int) -> tuple:
        if run == runs // 3:
            _september_closes(erp_url)
            _world(staging_url, folder, _changes)
        if run == 2 * runs // 3:
            _world(staging_url, folder, _budget)
        return (staging_url, erp_url, AS_OF[run >= runs // 3])

    killed = kill_windows(ctx, run_revenue_child, runs, seed, before)
    as_of = AS_OF[True]
    _check(staging_url, erp_url, date.fromisoformat(as_of))
    return killed


def test_sigkill_revenue_window_then_rerun_posts_exactly_once_duckdb(
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
        pg_schema(pg_available, "sp_revkill_stg") as staging,
        pg_schema(pg_available, "sp_revkill_erp") as erp,
    ):
        yield staging, erp


def test_sigkill_revenue_window_then_rerun_posts_exactly_once_postgres(
    pg_urls, tmp_path: Path, forkserver
) -> None:
    staging, erp = pg_urls
    _scenario(staging, erp, tmp_path / "files", forkserver, runs=6, seed=7)
