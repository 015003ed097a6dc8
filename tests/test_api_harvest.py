"""Harvest API v2 against a local replay of its documented responses: paging to the end,
429 + Retry-After, 401/403, a back-dated edit inside the look-back, the nightly full pull's
tombstones, master data, and the token kept out of logs."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.sources.api.errors import ApiAuthError, ApiResponseError
from staging_models.api_pull import PullSettings, pull, read_cursor
from staging_models.db import StagingDB
from staging_models.validation import validate_all
from tests.support.api_vendors import harvest_vendor
from tests.support.vendor_api import FakeHarvest, Reply, serve

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
TOKEN = "hv-secret-token-0123456789"


@pytest.fixture
def fake():
    with serve(FakeHarvest(TOKEN)) as f:
        yield f


def _current(db: StagingDB):
    return db.query_df(
        "SELECT * FROM stg_time_entries WHERE is_current ORDER BY row_key"
    ).set_index("row_key")


def test_pages_to_the_end_and_lands_every_entry(any_db: StagingDB, fake, tmp_path: Path) -> None:
    r = pull(
        any_db,
        harvest_vendor(fake),
        "time_entries",
        source_name="harvest",
        folder=tmp_path / "pulls",
        now=NOW,
    )
    pages = [q for q in fake.requests if q.path == "/v2/time_entries"]
    assert len(pages) == 3  # 5 entries, 2 per page: followed links.next to the end
    assert pages[0].query["updated_since"] == "2026-10-11T12:00:00Z"  # 30 days back
    assert r.records == 5 and r.load["status"] == "landed" and r.load["rows_new_version"] == 5
    assert (tmp_path / "pulls" / r.file_name).exists()  # the window's Parquet file is kept
    cur = _current(any_db)
    assert len(cur) == 5
    e = cur.loc["harvest:636709355"]
    assert e.hours == Decimal("2.1100") and e.bill_rate == Decimal("100.0000")
    assert e.currency == "EUR" and e.project_code == "MW" and e.task_code == "8083365"
    assert e.approval_status == "approved"
    assert (
        e.approved_at == e.updated_at
    )  # Harvest has no approval time: updated_at of a closed entry
    assert cur.loc["harvest:636708427"].approval_status == "submitted"
    assert read_cursor(any_db, "harvest", "time_entries") == NOW
    loads = any_db.query_df("SELECT * FROM loads")
    assert list(loads.status) == ["landed"] and int(loads.rows_read[0]) == 5


def test_429_retry_after_is_honoured(duck_db: StagingDB, fake, tmp_path: Path) -> None:
    fake.fail(429, {"Retry-After": "1"})
    started = time.monotonic()
    r = pull(
        duck_db,
        harvest_vendor(fake),
        "time_entries",
        source_name="harvest",
        folder=tmp_path,
        now=NOW,
    )
    assert time.monotonic() - started >= 1.0  # waited what Harvest asked, not the quick backoff
    assert r.records == 5 and r.requests == 4  # the 429, then three pages


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_fatal_and_name_the_setting(
    duck_db: StagingDB, fake, tmp_path: Path, status: int
) -> None:
    vendor = harvest_vendor(fake, token="wrong") if status == 401 else harvest_vendor(fake)
    if status == 403:
        fake.fail(403)
    with pytest.raises(ApiAuthError, match="STAGEPOST_HARVEST_TOKEN") as e:
        pull(duck_db, vendor, "time_entries", source_name="harvest", folder=tmp_path, now=NOW)
    assert str(status) in str(e.value)
    assert len(fake.requests) == 1  # never retried
    assert duck_db.scalar("SELECT count(*) FROM loads") == 0  # no empty success
    assert read_cursor(duck_db, "harvest", "time_entries") is None
    assert not list(tmp_path.glob("*.parquet"))


def test_backdated_edit_inside_the_lookback_lands_as_a_new_version(
    duck_db: StagingDB, fake, tmp_path: Path
) -> None:
    vendor = harvest_vendor(fake)
    pull(duck_db, vendor, "time_entries", source_name="harvest", folder=tmp_path, now=NOW)
    # Saved after the first pull, but stamped a day before it (a late sync, a clock behind).
    fake.edit(636707831, hours=Decimal("0.75"), updated_at="2026-11-09T12:00:00Z")
    later = NOW + timedelta(hours=1)
    r = pull(duck_db, vendor, "time_entries", source_name="harvest", folder=tmp_path, now=later)
    assert r.window_from == (NOW - timedelta(days=3)).isoformat()
    assert r.load["rows_new_version"] == 1 and r.load["rows_unchanged"] == 0
    versions = duck_db.query_df(
        "SELECT version, hours, is_current FROM stg_time_entries "
        "WHERE row_key = 'harvest:636707831' ORDER BY version"
    )
    assert list(versions.hours) == [Decimal("0.5000"), Decimal("0.7500")]
    assert list(versions.is_current) == [False, True]
    # Without the look-back the same edit is missed (singer-io/tap-harvest#18).
    fake.edit(636707831, hours=Decimal("1.0"), updated_at="2026-11-10T12:30:00Z")
    blind = PullSettings(lookback=timedelta(0))
    r = pull(
        duck_db,
        vendor,
        "time_entries",
        source_name="harvest",
        folder=tmp_path,
        now=later + timedelta(hours=1),
        settings=blind,
    )
    assert r.records == 0 and r.load == {}


def test_full_pull_tombstones_a_deleted_entry_of_its_own_source_only(
    duck_db: StagingDB, fake, tmp_path: Path
) -> None:
    vendor = harvest_vendor(fake)
    pull(duck_db, vendor, "time_entries", source_name="harvest", folder=tmp_path, now=NOW)
    with duck_db.begin() as conn:  # an entry of another source, dated in the same range
        conn.exec_driver_sql(
            """INSERT INTO stg_time_entries (row_key, version, load_id, row_no, key_missing,
               content_hash, entry_id, work_date, hours, deleted, is_current, state, landed_at)
               VALUES ('toggl:1', 1, 'Lx', 2, FALSE, 'h', 'toggl:1', DATE '2026-11-04', 1,
                       FALSE, TRUE, 'pending', now())"""
        )
    fake.delete(636708427)  # Harvest deletes are hard and invisible to updated_since
    settings = PullSettings(max_delete_share=Decimal("0.5"))
    r = pull(
        duck_db,
        vendor,
        "time_entries",
        source_name="harvest",
        folder=tmp_path,
        now=NOW + timedelta(hours=12),
        full=True,
        settings=settings,
    )
    assert r.mode == "full" and r.records == 4
    full = r.load["extra"]["full_export"]
    assert full["status"] == "applied" and full["tombstoned_entries"] == 1
    assert full["scope_entries"] == 5  # its own five, not toggl:1
    cur = _current(duck_db)
    assert bool(cur.loc["harvest:636708427"].deleted) is True
    assert bool(cur.loc["toggl:1"].deleted) is False
    # The full pull keeps its own cursor row: the incremental cursor did not move.
    assert read_cursor(duck_db, "harvest", "time_entries") == NOW
    assert read_cursor(duck_db, "harvest", "time_entries/full") == NOW + timedelta(hours=12)


def test_master_data_and_entries_validate(duck_db: StagingDB, fake, tmp_path: Path) -> None:
    vendor = harvest_vendor(fake)
    counts = {}
    for ds in ("employees", "projects", "project_tasks", "invoices", "time_entries"):
        counts[ds] = pull(
            duck_db, vendor, ds, source_name="harvest", folder=tmp_path, now=NOW
        ).records
    assert counts == {
        "employees": 2,
        "projects": 2,
        "project_tasks": 4,
        "invoices": 2,
        "time_entries": 5,
    }
    results = validate_all(duck_db, actor="test")
    te = results["time_entries"]
    assert (te.valid, te.quarantined, te.not_postable) == (4, 0, 1), te.by_rule
    assert results["invoices"].valid == 2, results["invoices"].by_rule
    amounts = duck_db.query_df(
        "SELECT entry_id, amount FROM validated_time_entries ORDER BY entry_id"
    )
    assert Decimal("140.63") in set(amounts.amount)  # 1.25 h x 112.5, to the cent


def test_token_never_reaches_logs_or_messages(
    duck_db: StagingDB, fake, tmp_path: Path, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.fail(429, {"Retry-After": "0"})
    pull(
        duck_db,
        harvest_vendor(fake),
        "time_entries",
        source_name="harvest",
        folder=tmp_path,
        now=NOW,
    )
    with pytest.raises(ApiAuthError) as e:
        pull(
            duck_db,
            harvest_vendor(fake, token=TOKEN + "-revoked"),
            "time_entries",
            source_name="harvest",
            folder=tmp_path,
            now=NOW + timedelta(hours=1),
        )
    assert "429" in caplog.text  # the retry was logged...
    assert TOKEN not in caplog.text  # ...and never the token
    assert TOKEN not in str(e.value) and TOKEN not in repr(e.value)


def test_a_page_link_to_another_host_or_an_undocumented_page_stops_the_pull(
    duck_db: StagingDB, fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = fake.route

    def elsewhere(req):
        reply = original(req)
        if reply.body and reply.body.get("links", {}).get("next"):
            reply.body["links"]["next"] = "https://evil.example/v2/time_entries?page=2"
        return reply

    monkeypatch.setattr(fake, "route", elsewhere)
    with pytest.raises(ApiResponseError, match="another host"):
        pull(
            duck_db,
            harvest_vendor(fake),
            "time_entries",
            source_name="harvest",
            folder=tmp_path,
            now=NOW,
        )
    monkeypatch.setattr(fake, "route", lambda req: Reply(200, {"time_entries": "none"}))
    with pytest.raises(ApiResponseError, match="expected a list under 'time_entries'"):
        pull(
            duck_db,
            harvest_vendor(fake),
            "time_entries",
            source_name="harvest",
            folder=tmp_path,
            now=NOW,
        )
    assert duck_db.scalar("SELECT count(*) FROM loads") == 0  # never an empty success
    assert read_cursor(duck_db, "harvest", "time_entries") is None
