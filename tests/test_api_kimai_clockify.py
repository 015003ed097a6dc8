"""Kimai and Clockify against local replays: Kimai pages by `X-Total-Pages` and filters by
`modified_after`; Clockify pages per member until a short page and filters by start time;
both report no deletions, so their full pulls find them; 401 names the setting."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.sources.api.errors import ApiAuthError
from staging_models.api_pull import PullSettings, pull
from staging_models.db import StagingDB
from tests.support.api_vendors import clockify_vendor, kimai_vendor
from tests.support.vendor_api import FakeClockify, FakeKimai, serve

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


def _current(db: StagingDB):
    return db.query_df("SELECT * FROM stg_time_entries WHERE is_current").set_index("row_key")


@pytest.fixture
def kimai():
    with serve(FakeKimai("km-token-xyz")) as f:
        yield f


@pytest.fixture
def clockify():
    with serve(FakeClockify("ck-token-xyz")) as f:
        yield f


def test_kimai_pages_by_total_pages_and_maps_rates(
    duck_db: StagingDB, kimai, tmp_path: Path
) -> None:
    r = pull(
        duck_db, kimai_vendor(kimai), "time_entries", source_name="kimai", folder=tmp_path, now=NOW
    )
    pages = [int(q.query["page"]) for q in kimai.requests]
    assert pages == [1, 2, 3]  # X-Total-Pages 3 at 2 per page
    assert kimai.requests[0].query["modified_after"] == "2026-10-11T12:00:00"  # UTC, no offset
    assert r.records == 4  # the running timesheet waits
    cur = _current(duck_db)
    assert cur.loc["kimai:103"].fixed_amount == Decimal("150.00")  # the amount, not a rate
    assert cur.loc["kimai:103"].bill_rate is None
    assert cur.loc["kimai:102"].hours == Decimal("0.1167")  # 420 s
    assert cur.loc["kimai:101"].project_code == "P-100" and cur.loc["kimai:101"].task_code == "5"
    assert cur.loc["kimai:104"].employee_id == "ben" and set(cur.currency) == {"EUR"}
    assert str(cur.loc["kimai:101"].work_date) == "2026-11-02"


def test_kimai_back_dated_edit_and_full_pull(duck_db: StagingDB, kimai, tmp_path: Path) -> None:
    vendor = kimai_vendor(kimai)
    pull(duck_db, vendor, "time_entries", source_name="kimai", folder=tmp_path, now=NOW)
    kimai.edit(104, duration=5400, modifiedAt="2026-11-09T08:00:00+0000")  # before the cursor
    r = pull(
        duck_db,
        vendor,
        "time_entries",
        source_name="kimai",
        folder=tmp_path,
        now=NOW + timedelta(hours=1),
    )
    assert r.load["rows_new_version"] == 1
    assert _current(duck_db).loc["kimai:104"].hours == Decimal("1.5000")
    kimai.entries = [e for e in kimai.entries if e["id"] != 102]  # deleted in Kimai
    r = pull(
        duck_db,
        vendor,
        "time_entries",
        source_name="kimai",
        folder=tmp_path,
        now=NOW + timedelta(hours=2),
        full=True,
        settings=PullSettings(max_delete_share=Decimal("0.5")),
    )
    assert r.load["extra"]["full_export"]["tombstoned_entries"] == 1
    assert bool(_current(duck_db).loc["kimai:102"].deleted) is True


def test_kimai_401_names_the_setting(duck_db: StagingDB, kimai, tmp_path: Path) -> None:
    with pytest.raises(ApiAuthError, match="STAGEPOST_KIMAI_TOKEN"):
        pull(
            duck_db,
            kimai_vendor(kimai, token="bad"),
            "time_entries",
            source_name="kimai",
            folder=tmp_path,
            now=NOW,
        )


def test_clockify_pages_each_member_to_a_short_page(
    duck_db: StagingDB, clockify, tmp_path: Path
) -> None:
    clockify.fail(429, {"Retry-After": "1"})
    started = time.monotonic()
    r = pull(
        duck_db,
        clockify_vendor(clockify),
        "time_entries",
        source_name="clockify",
        folder=tmp_path,
        now=NOW,
    )
    assert time.monotonic() - started >= 1.0
    paths = [(q.path.rsplit("/", 2)[-2], q.query.get("page")) for q in clockify.requests[1:]]
    # members (2 on page 1, then an empty page 2), then each member's entries until a short page
    assert paths[:2] == [("ws1", "1"), ("ws1", "2")]
    assert r.records == 5
    cur = _current(duck_db)
    e = cur.loc["clockify:6543a0000000000000000001"]
    assert e.hours == Decimal("2.2483") and e.bill_rate == Decimal("75.0000")
    assert cur.loc["clockify:6543a0000000000000000005"].bill_rate == Decimal("90.5000")
    assert str(cur.loc["clockify:6543a0000000000000000004"].work_date) == "2026-11-04"
    assert e.employee_name == "Cleo Park"


def test_clockify_full_pull_finds_a_deletion(duck_db: StagingDB, clockify, tmp_path: Path) -> None:
    vendor = clockify_vendor(clockify)
    pull(duck_db, vendor, "time_entries", source_name="clockify", folder=tmp_path, now=NOW)
    clockify.delete("6543a0000000000000000002")
    r = pull(
        duck_db,
        vendor,
        "time_entries",
        source_name="clockify",
        folder=tmp_path,
        now=NOW + timedelta(hours=1),
        full=True,
        settings=PullSettings(max_delete_share=Decimal("0.5")),
    )
    assert r.records == 4
    assert r.load["extra"]["full_export"]["tombstoned_entries"] == 1
    assert bool(_current(duck_db).loc["clockify:6543a0000000000000000002"].deleted) is True


def test_clockify_401_names_the_setting(duck_db: StagingDB, clockify, tmp_path: Path) -> None:
    with pytest.raises(ApiAuthError, match="STAGEPOST_CLOCKIFY_TOKEN"):
        pull(
            duck_db,
            clockify_vendor(clockify, token="bad"),
            "time_entries",
            source_name="clockify",
            folder=tmp_path,
            now=NOW,
        )
