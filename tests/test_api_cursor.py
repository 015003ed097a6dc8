"""The API cursor table on DuckDB and PostgreSQL, the client-side rate limit, Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from connectors.sources.api import kimai
from connectors.sources.api.errors import ApiRequestError
from connectors.sources.api.http import retry_after_seconds
from connectors.sources.api.rate_limit import RateLimit, Throttle
from staging_models.api_pull import advance_cursor, read_cursor
from staging_models.db import StagingDB
from tests.support.vendor_api import FakeKimai, Reply, serve

T0 = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


def test_cursor_is_per_source_and_dataset_and_never_moves_back(any_db: StagingDB) -> None:
    assert read_cursor(any_db, "harvest", "time_entries") is None

    def move(source: str, dataset: str, at: datetime) -> None:
        advance_cursor(
            any_db,
            source,
            dataset,
            cursor_at=at,
            window=(at - timedelta(days=3), at),
            mode="incremental",
            records=2,
            load_id="L1",
            file_name="f.parquet",
        )

    move("harvest", "time_entries", T0)
    move("toggl", "time_entries", T0 + timedelta(hours=1))
    move("harvest", "time_entries", T0 - timedelta(hours=5))  # an older window landed late
    assert read_cursor(any_db, "harvest", "time_entries") == T0
    assert read_cursor(any_db, "toggl", "time_entries") == T0 + timedelta(hours=1)
    assert read_cursor(any_db, "harvest", "projects") is None
    row = any_db.query_df("SELECT * FROM api_cursors WHERE source_name = 'harvest'").iloc[0]
    assert row["mode"] == "incremental" and int(row["records"]) == 2 and row["load_id"] == "L1"


def test_throttle_keeps_to_the_documented_rate() -> None:
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    t = Throttle(RateLimit(100, 15.0), clock=lambda: now[0], sleep=sleep)  # Harvest's limit
    sent = []
    for _ in range(250):
        t.wait()
        sent.append(now[0])
        now[0] += 0.01
    # Never more than 100 requests in any 15 s, and no pause before the 101st.
    assert all(sent[i + 100] - sent[i] >= 15.0 - 1e-9 for i in range(len(sent) - 100))
    assert sent[99] < 1.0 and sent[100] >= 15.0


def test_retry_after_as_seconds_or_http_date() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    when = retry_after_seconds("Tue, 10 Nov 2026 12:00:30 GMT", now=T0)
    assert when == 30.0


def test_a_redirect_is_refused_not_followed() -> None:
    with serve(FakeKimai("tok")) as fake:
        fake.route = lambda req: Reply(301, None, {"Location": "https://elsewhere.example/api"})
        with kimai.client(SecretStr("tok"), fake.url, rate_limit=RateLimit()) as c:
            with pytest.raises(ApiRequestError, match="elsewhere.example.*URL setting"):
                c.get("timesheets")
    assert [r.path for r in fake.requests] == ["/api/timesheets"]  # asked once, not followed
