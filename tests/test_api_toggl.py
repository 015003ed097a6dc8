"""Toggl Track API v9 against a local replay of `/me/time_entries`: deleted entries become
tombstone versions, local work dates, 429 and the hourly quota's 402, 401."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.sources.api.errors import ApiAuthError, ApiUnavailable
from staging_models.api_pull import PullSettings, pull, read_cursor
from staging_models.db import StagingDB
from staging_models.validation import validate_all
from tests.support.api_vendors import toggl_vendor
from tests.support.vendor_api import FakeToggl, serve

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
TOKEN = "tg-secret-token-abcdef"


@pytest.fixture
def fake():
    with serve(FakeToggl(TOKEN)) as f:
        yield f


def _current(db: StagingDB):
    return db.query_df("SELECT * FROM stg_time_entries WHERE is_current").set_index("row_key")


def test_pull_lands_finished_entries_with_local_dates(
    duck_db: StagingDB, fake, tmp_path: Path
) -> None:
    r = pull(
        duck_db, toggl_vendor(fake), "time_entries", source_name="toggl", folder=tmp_path, now=NOW
    )
    req, *rates = fake.requests  # then the workspace's rates (test_api_amounts.py)
    assert [r.path.removeprefix("/api/v9/workspaces/777") for r in rates] == [
        "",
        "/workspace_users",
        "/projects",
        "/projects",
        "/project_users",
    ]
    assert req.query == {"since": str(int((NOW - timedelta(days=30)).timestamp())), "meta": "true"}
    assert r.records == 4  # the running entry waits for a later pull
    cur = _current(duck_db)
    assert str(cur.loc["toggl:3400000002"].work_date) == "2026-11-03"  # 23:30 UTC is 00:30 Berlin
    assert cur.loc["toggl:3400000003"].hours == Decimal("0.3333")  # 1200 s
    assert cur.loc["toggl:3400000001"].employee_name == "Ada Lovelace"
    assert set(cur.currency) == {"EUR"}  # from STAGEPOST_DEFAULT_CURRENCY
    assert set(cur.approval_status) == {"submitted"}  # Toggl approves nothing
    assert "toggl:3400000004" not in cur.index


def test_deleted_entry_becomes_a_tombstone(duck_db: StagingDB, fake, tmp_path: Path) -> None:
    vendor = toggl_vendor(fake)
    pull(duck_db, vendor, "time_entries", source_name="toggl", folder=tmp_path, now=NOW)
    fake.edit(
        3400000005, server_deleted_at="2026-11-10T12:10:00+00:00", at="2026-11-10T12:10:00+00:00"
    )
    # A running timer discarded: never landed, deleted all the same (no hours to land).
    fake.edit(
        3400000004, server_deleted_at="2026-11-10T12:20:00+00:00", at="2026-11-10T12:20:00+00:00"
    )
    r = pull(
        duck_db,
        vendor,
        "time_entries",
        source_name="toggl",
        folder=tmp_path,
        now=NOW + timedelta(hours=1),
    )
    assert r.records == 2 and r.load["rows_new_version"] == 2
    discarded = _current(duck_db).loc["toggl:3400000004"]
    assert bool(discarded.deleted) is True and discarded.hours is None
    versions = duck_db.query_df(
        "SELECT version, deleted, is_current FROM stg_time_entries "
        "WHERE row_key = 'toggl:3400000005' ORDER BY version"
    )
    assert list(versions.deleted) == [False, True] and list(versions.is_current) == [False, True]
    validate_all(duck_db, actor="test")
    state = duck_db.scalar(
        "SELECT state FROM stg_time_entries WHERE row_key = 'toggl:3400000005' AND is_current"
    )
    assert state == "not_postable"


def test_429_and_the_hourly_quota_are_waited_out(duck_db: StagingDB, fake, tmp_path: Path) -> None:
    fake.fail(429, {"Retry-After": "1"})
    fake.fail(402, {"X-Toggl-Quota-Remaining": "0", "X-Toggl-Quota-Resets-In": "1"})
    started = time.monotonic()
    r = pull(
        duck_db, toggl_vendor(fake), "time_entries", source_name="toggl", folder=tmp_path, now=NOW
    )
    assert time.monotonic() - started >= 2.0 and r.records == 4
    # three tries of the entries, then the workspace's rates (projects: a page, an empty one)
    assert [q.path for q in fake.requests[:3]] == ["/api/v9/me/time_entries"] * 3
    assert len(fake.requests) == 3 + 5


def test_a_quota_reset_beyond_the_wait_ends_the_pull_retryably(
    duck_db: StagingDB, fake, tmp_path: Path
) -> None:
    fake.fail(402, {"X-Toggl-Quota-Resets-In": "3000"})
    with pytest.raises(ApiUnavailable, match="3000 s"):
        pull(
            duck_db,
            toggl_vendor(fake),
            "time_entries",
            source_name="toggl",
            folder=tmp_path,
            now=NOW,
        )
    assert read_cursor(duck_db, "toggl", "time_entries") is None


def test_401_is_fatal_and_names_the_setting(duck_db: StagingDB, fake, tmp_path: Path) -> None:
    with pytest.raises(ApiAuthError, match="STAGEPOST_TOGGL_TOKEN"):
        pull(
            duck_db,
            toggl_vendor(fake, token="nope"),
            "time_entries",
            source_name="toggl",
            folder=tmp_path,
            now=NOW,
        )
    assert duck_db.scalar("SELECT count(*) FROM loads") == 0


def test_since_stays_inside_the_three_months_toggl_answers(
    duck_db: StagingDB, fake, tmp_path: Path
) -> None:
    settings = PullSettings(initial=timedelta(days=200))
    pull(
        duck_db,
        toggl_vendor(fake),
        "time_entries",
        source_name="toggl",
        folder=tmp_path,
        now=NOW,
        settings=settings,
    )
    assert fake.requests[0].query["since"] == str(int((NOW - timedelta(days=89)).timestamp()))
