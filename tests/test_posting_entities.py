"""Posting windows per legal entity: windows of different entities post in parallel; a window over
all entities and an entity window never post the same entity at once; a dead holder's lock is
taken over per entity."""

from __future__ import annotations

import socket
import subprocess
import threading
from datetime import UTC, datetime
from decimal import Decimal

from posting.lock import PostingLocked, lock_names
from tests.support.posting_helpers import (
    PostingEnv,
    erp_lines,
    erp_net_hours,
    ledger,
    stage_entries,
)

pytest_plugins = ["tests.support.posting_fixtures"]

D = Decimal
US = {"legal_entity": "US01", "project_code": "UP1", "currency": "USD"}


def _stage(env: PostingEnv, n: int, prefix: str = "") -> dict[str, Decimal]:
    """n entries of DE01 and n of US01, hours varied; returns the net hours each must reach."""
    rows = [{"entry_id": f"{prefix}DE{i:02d}", "hours": D(1 + i % 4)} for i in range(n)]
    rows += [{"entry_id": f"{prefix}US{i:02d}", "hours": D(2 + i % 3), **US} for i in range(n)]
    stage_entries(env.db, rows)
    return {r["entry_id"]: r["hours"] for r in rows}


def _assert_exactly_once(env: PostingEnv, expected: dict[str, Decimal]) -> None:
    lines = erp_lines(env.erp)
    assert lines["external_id"].is_unique
    assert erp_net_hours(env.erp) == expected
    led = ledger(env.db)
    assert set(led["state"]) == {"confirmed"}
    assert set(led["external_id"]) == set(lines["external_id"])


def test_lock_names_one_per_entity_sorted_or_the_global_one() -> None:
    assert lock_names(()) == ["posting"]
    assert lock_names(["US01", "DE01", "US01"]) == ["posting:DE01", "posting:US01"]


def test_two_entity_windows_post_in_parallel(posting_env: PostingEnv) -> None:
    """Threads of one process (DuckDB admits no second process; Dagster runs its windows one
    at a time there, see docs/posting.md)."""
    expected = _stage(posting_env, 30)
    # Each window waits, holding its lock with its plan made, until the other has planned too:
    # if the locks excluded each other, one would be refused instead.
    planned = {le: threading.Event() for le in ("DE01", "US01")}
    results: dict[str, object] = {}

    def run(le: str, other: str) -> None:
        def hooks(step: str, batch: str) -> None:
            if step == "planned":
                planned[le].set()
                assert planned[other].wait(60), f"the {other} window never got going"

        try:
            results[le] = posting_env.window(legal_entities=[le], batch_size=7, hooks=hooks)
        except Exception as e:  # reported below
            results[le] = e
            planned[le].set()

    threads = [
        threading.Thread(target=run, args=("DE01", "US01")),
        threading.Thread(target=run, args=("US01", "DE01")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for le in ("DE01", "US01"):
        r = results[le]
        assert not isinstance(r, Exception), r
        assert r.status == "completed" and r.counts["confirmed"] == 30, r.counts
    _assert_exactly_once(posting_env, expected)
    led = ledger(posting_env.db)
    windows = {le: results[le].window_id for le in ("DE01", "US01")}
    assert (led["window_id"] == led["legal_entity"].map(windows)).all()


def test_all_entity_window_and_entity_window_exclude_each_other(posting_env: PostingEnv) -> None:
    expected = _stage(posting_env, 6)
    refusals: list[str] = []

    def try_window(**config) -> None:
        try:
            posting_env.window(**config)
            refusals.append("posted")
        except PostingLocked as e:
            refusals.append(str(e))

    # While an entity window holds its lock, a window over all entities is refused ...
    def in_entity_window(step: str, batch: str) -> None:
        if step == "planned":
            try_window()
            try_window(legal_entities=["US01", "DE01"])  # touches DE01 too
            try_window(legal_entities=["US01"])  # another entity: it may post

    r = posting_env.window(legal_entities=["DE01"], batch_size=4, hooks=in_entity_window)
    assert r.status == "completed" and r.counts["confirmed"] == 6
    assert "posting legal entity DE01" in refusals[0]
    assert "posting legal entity DE01" in refusals[1]
    assert refusals[2] == "posted"
    # ... and while the window over all entities holds its lock, every entity window is.
    more = _stage(posting_env, 3, prefix="X")
    refusals.clear()

    def in_all_window(step: str, batch: str) -> None:
        if step == "planned":
            try_window(legal_entities=["DE01"])
            try_window(legal_entities=["US01"])

    r = posting_env.window(batch_size=4, hooks=in_all_window)
    assert r.status == "completed" and r.counts["confirmed"] == 6
    assert len(refusals) == 2 and all("posting all legal entities" in m for m in refusals)
    _assert_exactly_once(posting_env, {**expected, **more})


def test_all_entity_window_racing_an_entity_window_never_double_posts(
    posting_env: PostingEnv,
) -> None:
    expected: dict[str, Decimal] = {}
    for round_no in range(3):
        expected |= _stage(posting_env, 8, prefix=f"R{round_no}")
        start = threading.Barrier(2)
        outcomes: list[str] = []

        def run(start=start, outcomes=outcomes, **config) -> None:
            start.wait()
            try:
                posting_env.window(batch_size=3, **config)
                outcomes.append("posted")
            except PostingLocked:
                outcomes.append("refused")

        threads = [
            threading.Thread(target=run),
            threading.Thread(target=run, kwargs={"legal_entities": ["DE01"]}),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        # One posts and the other is refused, or the second came after the first; both may be
        # refused if they took their own locks at the same moment (each saw the other).
        assert len(outcomes) == 2
        if "refused" in outcomes:  # the loser's lines wait for the next window
            posting_env.window()
        _assert_exactly_once(posting_env, expected)


def test_lock_of_a_dead_holder_is_taken_over_per_entity(duck_env: PostingEnv) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    now = datetime.now(UTC)
    with duck_env.db.begin() as c:
        for name in ("posting:DE01", "posting"):  # its own entity's row, and the global one
            c.exec_driver_sql(
                "INSERT INTO posting_lock VALUES (?, ?, 'W-dead', ?, ?)",
                (name, f"{socket.gethostname()}:{dead.pid}:W-dead", now, now),
            )
    expected = _stage(duck_env, 2)
    r = duck_env.window(legal_entities=["DE01"])
    assert r.status == "completed" and r.counts["confirmed"] == 2
    assert duck_env.db.scalar("SELECT COUNT(*) FROM posting_lock WHERE holder IS NOT NULL") == 0
    # A dead entity holder does not stop a window over all entities either.
    with duck_env.db.begin() as c:
        c.exec_driver_sql(
            "UPDATE posting_lock SET holder = ?, window_id = 'W-dead', heartbeat_at = ? "
            "WHERE lock_name = 'posting:DE01'",
            (f"{socket.gethostname()}:{dead.pid}:W-dead", now),
        )
    assert duck_env.window().counts["confirmed"] == 2
    _assert_exactly_once(duck_env, expected)


def test_an_entity_window_leaves_another_entitys_batch_in_flight_alone(
    posting_env: PostingEnv,
) -> None:
    """A window starts by settling what crashed windows left `sent`: only its own entities'
    lines, and it fails no batch another window is sending."""
    expected = _stage(posting_env, 4)
    seen: dict[str, object] = {}

    def in_de_window(step: str, batch: str) -> None:
        if step == "batch_marked_sent" and "us" not in seen:
            seen["us"] = posting_env.window(legal_entities=["US01"])
            seen["batches"] = posting_env.db.query_df(
                "SELECT batch_id, state FROM posting_batches ORDER BY batch_id"
            )

    de = posting_env.window(legal_entities=["DE01"], batch_size=10, hooks=in_de_window)
    us = seen["us"]
    assert us.counts["settled_confirmed"] == us.counts["settled_requeued"] == 0
    assert us.counts["confirmed"] == 4
    during = seen["batches"]
    mine = during["batch_id"].str.startswith(de.window_id)
    assert during.loc[mine, "state"].tolist() == ["sent"]  # still in flight, not failed
    assert de.status == "completed" and de.counts["confirmed"] == 4
    _assert_exactly_once(posting_env, expected)
