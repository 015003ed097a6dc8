"""Posting-window rules: posting hours, closed periods, dry run, the lock."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook

from posting.lock import PostingLockLost
from posting.window import (
    PostingHoursClosed,
    PostingLocked,
    RetryPolicy,
    WindowConfig,
    run_window,
)
from tests.support.posting_helpers import (
    PostingEnv,
    correct,
    erp_lines,
    erp_net_hours,
    ledger,
    stage_entries,
)

# Fixtures posting_env (DuckDB and PostgreSQL) and duck_env.
pytest_plugins = ["tests.support.posting_fixtures"]

D = Decimal
BERLIN_EVENINGS = "mon-fri 17:00-20:00 Europe/Berlin"
SATURDAY_MORNING = datetime(2026, 11, 7, 10, 0, tzinfo=UTC)
MONDAY_EVENING = datetime(2026, 11, 9, 16, 30, tzinfo=UTC)  # 17:30 in Berlin


def _windows(env: PostingEnv):
    return env.db.query_df(
        "SELECT status, note, override_reason, message FROM posting_windows ORDER BY started_at"
    )


# -- posting hours ---------------------------------------------------------------------------


def test_outside_posting_hours_is_refused_and_recorded(duck_env: PostingEnv) -> None:
    stage_entries(duck_env.db, [{"entry_id": "TE1"}])
    with pytest.raises(PostingHoursClosed) as e:
        run_window(
            duck_env.db,
            duck_env.erp,
            WindowConfig(dry_run=False, posting_hours=BERLIN_EVENINGS, note="asked by Ben"),
            now=SATURDAY_MORNING,
        )
    assert str(e.value).startswith(
        "Posting is allowed only mon-fri 17:00-20:00 Europe/Berlin; "
        "it is now Sat 2026-11-07 11:00 Europe/Berlin. The next window opens Mon 2026-11-09 17:00."
    )
    assert "override reason" in str(e.value)
    assert ledger(duck_env.db).empty and erp_lines(duck_env.erp).empty
    rec = _windows(duck_env).iloc[0]
    assert rec["status"] == "refused" and "Europe/Berlin" in rec["message"]
    assert rec["note"] == "asked by Ben"  # the operator's note, not the refusal


def test_override_reason_posts_outside_hours_and_is_recorded(duck_env: PostingEnv) -> None:
    stage_entries(duck_env.db, [{"entry_id": "TE1"}])
    result = run_window(
        duck_env.db,
        duck_env.erp,
        WindowConfig(
            dry_run=False,
            posting_hours=BERLIN_EVENINGS,
            override_reason="Year-end close, approved by the CFO",
        ),
        now=SATURDAY_MORNING,
    )
    assert result.status == "completed" and len(erp_lines(duck_env.erp)) == 1
    rec = _windows(duck_env).iloc[0]
    assert (rec["status"], rec["override_reason"]) == (
        "completed",
        "Year-end close, approved by the CFO",
    )


def test_inside_posting_hours_needs_no_override(duck_env: PostingEnv) -> None:
    stage_entries(duck_env.db, [{"entry_id": "TE1"}])
    result = run_window(
        duck_env.db,
        duck_env.erp,
        WindowConfig(dry_run=False, posting_hours=BERLIN_EVENINGS),
        now=MONDAY_EVENING,
    )
    assert result.status == "completed"


# -- closed periods --------------------------------------------------------------------------

OCT_30 = date(2026, 10, 30)


def test_closed_period_next_open_books_into_the_next_open_period(duck_env: PostingEnv) -> None:
    duck_env.erp.set_period("DE01", "2026-10", False)
    stage_entries(duck_env.db, [{"entry_id": "LATE", "work_date": OCT_30}, {"entry_id": "OK"}])
    result = duck_env.window(closed_period_policy="next_open")
    assert result.counts["confirmed"] == 2
    late = erp_lines(duck_env.erp).set_index("entry_id").loc["LATE"]
    assert (late["work_date"], late["period"]) == (OCT_30, "2026-11")
    msg = ledger(duck_env.db).set_index("entry_id").loc["LATE", "erp_message"]
    assert msg == "Booked in 2026-11: period 2026-10 is closed for DE01"


def test_closed_period_hold_keeps_the_line_until_it_reopens(duck_env: PostingEnv) -> None:
    duck_env.erp.set_period("DE01", "2026-10", False)
    stage_entries(duck_env.db, [{"entry_id": "LATE", "work_date": OCT_30}, {"entry_id": "OK"}])
    result = duck_env.window(closed_period_policy="hold")
    assert result.counts["time_lines_held"] == 1 and result.counts["confirmed"] == 1
    row = ledger(duck_env.db).set_index("entry_id").loc["LATE"]
    assert row["state"] == "held"
    assert row["erp_message"] == (
        "Posting period 2026-10 is closed for DE01; held (policy hold) until it reopens"
    )
    assert set(erp_net_hours(duck_env.erp)) == {"OK"}
    duck_env.erp.set_period("DE01", "2026-10", True)
    duck_env.window(closed_period_policy="hold")
    late = erp_lines(duck_env.erp).set_index("entry_id").loc["LATE"]
    assert late["period"] == "2026-10"
    assert ledger(duck_env.db).set_index("entry_id").loc["LATE", "state"] == "confirmed"


def test_next_open_holds_when_no_later_period_is_open(duck_env: PostingEnv) -> None:
    for m in range(10, 23):  # 2026-10 .. 2027-10: the whole horizon closed
        y, mm = divmod(2026 * 12 + m - 1, 12)
        duck_env.erp.set_period("DE01", f"{y}-{mm + 1:02d}", False)
    stage_entries(duck_env.db, [{"entry_id": "LATE", "work_date": OCT_30}])
    duck_env.window(closed_period_policy="next_open")
    row = ledger(duck_env.db).iloc[0]
    assert row["state"] == "held"
    assert row["erp_message"] == (
        "Posting period 2026-10 is closed for DE01 and no later period is open within "
        "12 months; held until one opens"
    )
    assert erp_lines(duck_env.erp).empty


def test_correction_into_a_closed_period_is_held_as_a_pair(duck_env: PostingEnv) -> None:
    stage_entries(duck_env.db, [{"entry_id": "TE1", "work_date": OCT_30}])
    duck_env.window()
    duck_env.erp.set_period("DE01", "2026-10", False)
    correct(duck_env.db, "TE1", hours=D("2"), work_date=date(2026, 11, 3))
    result = duck_env.window(closed_period_policy="hold")
    assert result.counts["time_lines_held"] == 2
    states = ledger(duck_env.db).set_index("external_id")["erp_message"].to_dict()
    assert states["te:TE1:v2:post"] == (
        "Held with the other half of its correction (te:TE1:v1:rev): "
        "Posting period 2026-10 is closed for DE01; held (policy hold) until it reopens"
    )
    assert erp_net_hours(duck_env.erp) == {"TE1": D("7.5")}  # unchanged, not doubled
    # Under next_open the same correction goes through: reversal booked in November.
    duck_env.window(closed_period_policy="next_open")
    assert erp_net_hours(duck_env.erp) == {"TE1": D("2")}
    rev = erp_lines(duck_env.erp).set_index("external_id").loc["te:TE1:v1:rev"]
    assert rev["period"] == "2026-11"


# -- dry run -----------------------------------------------------------------------------------


def test_dry_run_posts_nothing_and_writes_a_safe_preview(duck_env: PostingEnv) -> None:
    stage_entries(
        duck_env.db,
        [
            {"entry_id": "=1+1", "description": '=HYPERLINK("http://x")'},
            {"entry_id": "TE2", "description": "+49 30 1234", "hours": D("1.25")},
            {"entry_id": "TE3", "description": "@SUM(A1)", "project_code": "P2"},
            {"entry_id": "TE4", "legal_entity": "US01", "project_code": "UP1", "currency": "USD"},
        ],
    )
    result = run_window(
        duck_env.db, duck_env.erp, WindowConfig(dry_run=True, preview_dir=duck_env.tmp_path)
    )
    assert result.status == "dry_run" and result.counts["lines_sendable"] == 4
    assert ledger(duck_env.db).empty and erp_lines(duck_env.erp).empty
    assert duck_env.db.scalar("SELECT status FROM posting_windows") == "dry_run"
    s = result.summary.set_index(["legal_entity", "project_code", "currency"])
    assert s.loc[("DE01", "P1", "EUR"), "hours"] == D("8.75")
    assert s.loc[("DE01", "P1", "EUR"), "amount"] == D("875.00")
    assert s.loc[("US01", "UP1", "USD"), "lines"] == 1
    wb = load_workbook(result.preview_path)
    assert wb.sheetnames == ["Summary", "Lines"]
    cells = {c.value: c for row in wb["Lines"].iter_rows() for c in row if c.value is not None}
    for text in ("=1+1", '=HYPERLINK("http://x")', "+49 30 1234", "@SUM(A1)"):
        # Text, and marked so Excel keeps it text when the cell is edited.
        assert cells[text].data_type == "s" and cells[text].quotePrefix, text
    assert wb["Summary"].cell(1, 1).value.startswith("Dry run W")


def test_preview_says_when_it_shows_only_part_of_the_lines(duck_env: PostingEnv) -> None:
    stage_entries(duck_env.db, [{"entry_id": f"TE{i}"} for i in range(5)])
    result = run_window(
        duck_env.db,
        duck_env.erp,
        WindowConfig(dry_run=True, preview_dir=duck_env.tmp_path, preview_detail_limit=2),
    )
    ws = load_workbook(result.preview_path)["Lines"]
    assert ws.cell(1, 1).value == (
        "Lines sheet shows the first 2 of 5 lines; the summary covers all."
    )
    assert ws.max_row == 4  # note, header, 2 lines


# -- the lock ------------------------------------------------------------------------------------


def test_a_second_window_while_one_runs_is_refused(posting_env: PostingEnv) -> None:
    stage_entries(posting_env.db, [{"entry_id": f"TE{i}"} for i in range(6)])
    second: dict = {}

    def during_first(step: str, batch: str) -> None:
        if step == "planned" and not second:
            try:
                posting_env.window()
                second["result"] = "posted"
            except PostingLocked as e:
                second["result"] = str(e)

    first = run_window(
        posting_env.db,
        posting_env.erp,
        WindowConfig(dry_run=False, batch_size=2),
        hooks=during_first,
    )
    assert second["result"].startswith("Another posting window (W")
    assert "Wait for it to finish" in second["result"]
    assert first.counts["confirmed"] == 6 and len(erp_lines(posting_env.erp)) == 6
    statuses = sorted(_windows(posting_env)["status"])
    assert statuses == ["completed", "refused"]


def test_two_windows_racing_never_both_post(posting_env: PostingEnv) -> None:
    n = 40
    stage_entries(posting_env.db, [{"entry_id": f"TE{i:02d}"} for i in range(n)])
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def window() -> None:
        start.wait()
        try:
            r = posting_env.window(batch_size=5)
            outcomes.append(f"posted {r.counts['confirmed']}")
        except PostingLocked:
            outcomes.append("refused")

    threads = [threading.Thread(target=window) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # Either the second was refused, or it came after the first and found nothing to do.
    assert sorted(outcomes) in (["posted 40", "refused"], ["posted 0", "posted 40"])
    lines = erp_lines(posting_env.erp)
    assert len(lines) == n and lines["external_id"].is_unique


def test_lock_of_a_dead_process_is_taken_over(duck_env: PostingEnv) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    now = datetime.now(UTC)
    with duck_env.db.begin() as c:
        c.exec_driver_sql(
            "INSERT INTO posting_lock VALUES ('posting', ?, 'W-dead', ?, ?)",
            (f"{socket.gethostname()}:{dead.pid}:W-dead", now, now),
        )
    stage_entries(duck_env.db, [{"entry_id": "TE1"}])
    assert duck_env.window().status == "completed"
    assert duck_env.db.scalar("SELECT holder FROM posting_lock") is None


def _wait_for_zombie(child: subprocess.Popen, timeout: float = 10.0) -> None:
    """Until the exited, unreaped child shows state Z in /proc (it exits almost at once)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stat = Path(f"/proc/{child.pid}/stat").read_text()
        if stat.rpartition(")")[2].split()[0] == "Z":
            return
        time.sleep(0.01)
    raise AssertionError(f"child {child.pid} did not become a zombie")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_lock_of_a_zombie_holder_is_taken_over(duck_env: PostingEnv) -> None:
    # A window killed but not yet reaped by its parent: kill(pid, 0) still succeeds on it.
    zombie = subprocess.Popen(["true"])
    try:
        _wait_for_zombie(zombie)
        now = datetime.now(UTC)
        with duck_env.db.begin() as c:
            c.exec_driver_sql(
                "INSERT INTO posting_lock VALUES ('posting', ?, 'W-zombie', ?, ?)",
                (f"{socket.gethostname()}:{zombie.pid}:W-zombie", now, now),
            )
        stage_entries(duck_env.db, [{"entry_id": "TE1"}])
        window = duck_env.window(lock_stale_after=timedelta(hours=1))
        assert window.status == "completed"
        assert duck_env.db.scalar("SELECT holder FROM posting_lock") is None
    finally:
        zombie.wait()


def test_a_live_holder_on_this_host_keeps_its_lock(duck_env: PostingEnv) -> None:
    now = datetime.now(UTC)
    with duck_env.db.begin() as c:
        c.exec_driver_sql(
            "INSERT INTO posting_lock VALUES ('posting', ?, 'W-live', ?, ?)",
            (f"{socket.gethostname()}:{os.getppid()}:W-live", now, now),
        )
    with pytest.raises(PostingLocked, match="STAGEPOST_POSTING_LOCK_STALE_SECONDS"):
        duck_env.window()


def test_lock_stale_age_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from resources.settings import posting_policy_resource

    assert posting_policy_resource().lock_stale_after() == timedelta(minutes=15)
    monkeypatch.setenv("STAGEPOST_POSTING_LOCK_STALE_SECONDS", "90")
    assert posting_policy_resource().lock_stale_after() == timedelta(seconds=90)
    monkeypatch.setenv("STAGEPOST_POSTING_LOCK_STALE_SECONDS", "0")
    with pytest.raises(ValueError, match="STAGEPOST_POSTING_LOCK_STALE_SECONDS"):
        posting_policy_resource().lock_stale_after()


def test_lock_of_another_host_waits_for_its_heartbeat_to_expire(duck_env: PostingEnv) -> None:
    now = datetime.now(UTC)
    with duck_env.db.begin() as c:
        c.exec_driver_sql(
            "INSERT INTO posting_lock VALUES ('posting', 'other-host:1:W-x', 'W-x', ?, ?)",
            (now - timedelta(hours=1), now - timedelta(minutes=5)),
        )
    with pytest.raises(PostingLocked, match=r"Another posting window \(W-x\)"):
        duck_env.window(lock_stale_after=timedelta(minutes=15))
    assert duck_env.window(lock_stale_after=timedelta(minutes=2)).status == "completed"


def test_a_window_that_lost_its_lock_stops_and_the_next_settles(duck_env: PostingEnv) -> None:
    stage_entries(duck_env.db, [{"entry_id": f"TE{i}"} for i in range(4)])

    def steal(step: str, batch: str) -> None:
        if step == "batch_posted":
            with duck_env.db.begin() as c:
                c.exec_driver_sql("UPDATE posting_lock SET holder = 'other-host:1:W-thief'")

    with pytest.raises(PostingLockLost):
        run_window(
            duck_env.db,
            duck_env.erp,
            WindowConfig(dry_run=False, batch_size=2, retry=RetryPolicy(attempts=1)),
            hooks=steal,
        )
    # It stopped after its first batch reached the ERP; that batch and the one read ahead
    # are left `sent`, nothing is recorded as confirmed.
    assert len(erp_lines(duck_env.erp)) == 2
    assert set(ledger(duck_env.db)["state"]) == {"sent"}
    with duck_env.db.begin() as c:
        c.exec_driver_sql("UPDATE posting_lock SET holder = NULL")
    result = duck_env.window(batch_size=2)
    assert result.counts["settled_confirmed"] == 2 and result.counts["settled_requeued"] == 2
    assert result.counts["confirmed"] == 2
    assert len(erp_lines(duck_env.erp)) == 4


def test_a_refused_plan_releases_the_lock(duck_env: PostingEnv) -> None:
    from posting.window import PlanTooLarge

    stage_entries(duck_env.db, [{"entry_id": "TE1"}])
    with pytest.raises(PlanTooLarge):
        duck_env.window(max_lines=0)
    assert duck_env.db.scalar("SELECT holder FROM posting_lock") is None
    assert duck_env.window().status == "completed"


def test_a_window_while_another_process_holds_the_duckdb_file_is_refused(
    duck_env: PostingEnv,
) -> None:
    import sys

    path = duck_env.db.engine.url.database
    duck_env.db.engine.dispose()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({path!r}); print('open', flush=True); "
            "time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(PostingLocked, match=r"open in another process \(.*PID \d+\)"):
            duck_env.window()
    finally:
        holder.kill()
        holder.wait()
    assert duck_env.window().status == "completed"  # free again
