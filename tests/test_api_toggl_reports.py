"""Toggl Track workspace-wide through the Reports API v3 (`STAGEPOST_TOGGL_WORKSPACE_ID`),
against a local replay of the detailed report: every member's entries with local work dates,
the report's rates exact to the cent (Toggl's hierarchy where it hides them), paging by the
`X-Next-*` headers to the end, the body as documented, work-date windows that find a past
week's edit, and a full pull that turns an entry gone from the range into a tombstone."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from connectors.sources.api import toggl, toggl_reports
from connectors.sources.api.errors import ApiAuthError
from resources.api_source import ApiSource
from staging_models.api_pull import PullSettings, pull, read_cursor
from staging_models.db import StagingDB
from staging_models.validation import validate_all
from tests.support.api_vendors import DEFAULTS, toggl_workspace_vendor
from tests.support.vendor_api import FakeToggl, serve

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
TOKEN = "tg-admin-token-abcdef"
APPROVING = dataclasses.replace(DEFAULTS, approval="approved")
SEARCH = "/reports/api/v3/workspace/777/search/time_entries"
#: Every finished entry of the fixture dated in the first pull's 30 days (not the running one).
LANDED = {f"toggl:350000000{n}" for n in (1, 2, 3, 4, 5, 6, 8)}


@pytest.fixture
def fake():
    with serve(FakeToggl(TOKEN)) as f:
        yield f


def _pull(db: StagingDB, fake: FakeToggl, now: datetime = NOW, **kw):
    return pull(
        db,
        toggl_workspace_vendor(fake, defaults=kw.pop("defaults", APPROVING)),
        "time_entries",
        source_name="toggl",
        folder=kw.pop("folder"),
        now=now,
        **kw,
    )


def _current(db: StagingDB):
    return db.query_df("SELECT * FROM stg_time_entries WHERE is_current").set_index("row_key")


def test_every_members_entries_land_with_local_dates_paging_to_the_end(
    duck_db: StagingDB, fake, tmp_path: Path
) -> None:
    r = _pull(duck_db, fake, folder=tmp_path)
    searches = [q for q in fake.requests if q.path == SEARCH]
    # 8 rows in range at 2 a page: 4 POSTs, each next page where the headers said
    assert [q.method for q in searches] == ["POST"] * 4
    assert [q.body.get("first_row_number") for q in searches] == [None, 3, 5, 7]
    # ordered by start: page 2 starts at row 3, the late deploy of 2026-11-02 23:30 UTC
    assert searches[1].body["first_id"] == 3500000002
    assert searches[1].body["first_timestamp"] == int(
        datetime(2026, 11, 2, 23, 30, tzinfo=UTC).timestamp()
    )
    # the body as documented: dates (a day more each side), not grouped, amounts shown
    first = searches[0].body
    assert first == {
        "start_date": "2026-10-10",
        "end_date": "2026-11-12",
        "grouped": False,
        "hide_amounts": False,
        "page_size": 50,
    }
    assert r.records == len(LANDED) and r.requests == len(fake.requests)
    cur = _current(duck_db)
    assert set(cur.index) == LANDED  # the running entry waits for a later pull
    assert set(cur.employee_id) == {"6", "7", "8"}
    assert cur.loc["toggl:3500000003"].employee_name == "Grace Hopper"
    assert str(cur.loc["toggl:3500000002"].work_date) == "2026-11-03"  # 23:30 UTC, Berlin
    assert cur.loc["toggl:3500000003"].duration_seconds == 8094
    assert set(cur.deleted) == {False}


def test_rates_from_the_report_exact_to_the_cent(any_db: StagingDB, fake, tmp_path: Path) -> None:
    _pull(any_db, fake, folder=tmp_path)
    cur = _current(any_db)
    rates = {k: cur.loc[k].bill_rate for k in LANDED}
    assert rates["toggl:3500000003"] == Decimal("123.45")  # 12345 cents, never a float
    assert rates["toggl:3500000002"] == Decimal("95.50")
    assert rates["toggl:3500000001"] == Decimal("75")
    # the report sent no rate: Toggl's hierarchy, Alan's own rate on the project (95)
    assert rates["toggl:3500000004"] == Decimal("95")
    assert pd.isna(rates["toggl:3500000005"])  # not billable: no rate
    validate_all(any_db, actor="test")
    assert any_db.scalar("SELECT count(*) FROM quarantine") == 0
    df = any_db.query_df("SELECT entry_id, amount FROM validated_time_entries")
    amounts = dict(zip(df.entry_id, df.amount, strict=True))
    assert amounts["toggl:3500000003"] == Decimal("277.56")  # 8094 s at 123.45 = 277.555..
    assert amounts["toggl:3500000002"] == Decimal("119.38")  # 4500 s at 95.50 = 119.375
    # derived master data named from v9's projects and clients
    projects = any_db.query_df("SELECT * FROM stg_projects WHERE is_current")
    named = dict(zip(projects.project_code, projects.project_name, strict=True))
    assert named == {"193791": "Website", "193792": "Internal"}
    assert set(projects.customer_id) == {"Acme"}
    employees = any_db.query_df("SELECT employee_id FROM stg_employees WHERE is_current")
    assert set(employees.employee_id) == {"6", "7", "8"}


def test_rates_hidden_from_the_token_keep_the_reports_own(
    duck_db: StagingDB, fake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """v9's rates, projects and clients not readable (403): the report's rates still land
    exactly, and the row the report sent no rate for lands without one (TE_RATE_MISSING
    unless a rate card covers it), never at a guess; the pull does not fail."""
    fake.sees_rates = False
    r = _pull(duck_db, fake, folder=tmp_path)
    assert r.records == len(LANDED) and "not readable" in caplog.text
    cur = _current(duck_db)
    assert cur.loc["toggl:3500000003"].bill_rate == Decimal("123.45")
    assert pd.isna(cur.loc["toggl:3500000004"].bill_rate)
    assert cur.loc["toggl:3500000004"].currency == "EUR"  # STAGEPOST_DEFAULT_CURRENCY


def test_an_entry_gone_from_a_full_pull_becomes_a_tombstone(
    duck_db: StagingDB, fake, tmp_path: Path
) -> None:
    _pull(duck_db, fake, folder=tmp_path)
    fake.delete_report(3500000005)
    settings = PullSettings(max_delete_share=Decimal("0.5"))
    r = _pull(
        duck_db, fake, NOW + timedelta(hours=14), folder=tmp_path, settings=settings, full=True
    )
    assert r.mode == "full"
    assert r.load["extra"]["full_export"]["vanished_entries"] == 1
    gone = _current(duck_db).loc["toggl:3500000005"]
    assert bool(gone.deleted) is True
    assert read_cursor(duck_db, "toggl", "time_entries/full") is not None
    validate_all(duck_db, actor="test")
    state = duck_db.scalar(
        "SELECT state FROM stg_time_entries WHERE row_key = 'toggl:3500000005' AND is_current"
    )
    assert state == "not_postable"


def test_an_edit_in_a_past_week_is_found_by_the_work_date_window(
    duck_db: StagingDB, fake, tmp_path: Path
) -> None:
    _pull(duck_db, fake, folder=tmp_path)
    later = NOW + timedelta(hours=1)
    # Saturday's entry, edited on Tuesday: the hourly pull asks the look-back's work dates
    fake.edit_report(3500000008, seconds=5400, at="2026-11-10T12:30:00+00:00")
    # an October entry edited too: older than the look-back, the nightly full pull finds it
    fake.edit_report(3500000006, seconds=5400, at="2026-11-10T12:31:00+00:00")
    r = _pull(duck_db, fake, later, folder=tmp_path)
    body = next(
        q.body
        for q in reversed(fake.requests)
        if q.path == SEARCH and not q.body.get("first_row_number")
    )
    assert (body["start_date"], body["end_date"]) == ("2026-11-06", "2026-11-12")
    assert r.load["rows_new_version"] == 1
    cur = _current(duck_db)
    assert cur.loc["toggl:3500000008"].duration_seconds == 5400
    assert cur.loc["toggl:3500000006"].duration_seconds == 3600
    r = _pull(duck_db, fake, later + timedelta(hours=13), folder=tmp_path, full=True)
    assert r.load["rows_new_version"] == 1
    assert _current(duck_db).loc["toggl:3500000006"].duration_seconds == 5400


def test_401_names_the_settings_and_429_is_waited_out(
    duck_db: StagingDB, fake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    with pytest.raises(ApiAuthError, match="STAGEPOST_TOGGL_WORKSPACE_ID"):
        pull(
            duck_db,
            toggl_workspace_vendor(fake, token="nope"),
            "time_entries",
            source_name="toggl",
            folder=tmp_path,
            now=NOW,
        )
    assert duck_db.scalar("SELECT count(*) FROM loads") == 0
    fake.requests.clear()
    fake.fail(429, {"Retry-After": "1"})
    r = _pull(duck_db, fake, folder=tmp_path)
    assert r.records == len(LANDED)
    assert [q.path for q in fake.requests[:2]] == [SEARCH, SEARCH]
    assert "429" in caplog.text and TOKEN not in caplog.text  # the token never in a log line


def test_the_setting_picks_the_mode_and_the_reports_url() -> None:
    assert toggl_reports.reports_url("https://api.track.toggl.com/api/v9/") == (
        "https://api.track.toggl.com/reports/api/v3"
    )
    with pytest.raises(ValueError, match="/api/v9"):
        toggl_reports.reports_url("https://proxy.example/toggl")
    base = {"vendor": "toggl", "token": "t", "timezone": "Europe/Berlin"}
    me = ApiSource(**base).open()
    ws = ApiSource(**base, workspace_id="777").open()
    try:
        assert type(me) is toggl.Toggl and me.change_cursor and me.reports_deletions
        assert isinstance(ws, toggl_reports.TogglWorkspace)
        assert not ws.change_cursor and not ws.reports_deletions
        assert ws.reports.base_url == "https://api.track.toggl.com/reports/api/v3"
        assert ws.reports.throttle is ws.client.throttle  # one shared rate limit
        assert "Reports API" in ApiSource(**base, workspace_id="777").describe()
    finally:
        me.close()
        ws.close()


def _toggl_source(fake: FakeToggl, workspace_id: str) -> ApiSource:
    return ApiSource(
        vendor="toggl",
        token=TOKEN,
        url=f"{fake.url}/api/v9",
        workspace_id=workspace_id,
        timezone="Europe/Berlin",
        approval="approved",
        default_currency="EUR",
        default_legal_entity="DE01",
        initial_days=3650,  # the fixtures are from November 2026
        full_pull_days=3650,
        max_delete_share="0.5",
    )


@pytest.mark.parametrize("workspace_id", ["777", ""])
def test_the_nightly_job_pulls_in_full_in_workspace_mode_only(
    duck_db: StagingDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workspace_id: str
) -> None:
    """Workspace mode: the nightly run is a full export (deletions become tombstones); `/me`
    reports deletions itself, so its nightly run stays a pull of changes."""
    from dagster import DagsterInstance, Definitions

    from assets.api_ingestion import api_assets
    from assets.validation import validation_assets, validation_checks
    from pipelines.api_jobs import api_jobs, api_nightly_jobs
    from resources.settings import API_VENDORS
    from resources.staging import StagingDatabase

    monkeypatch.setenv("STAGEPOST_DATA_DIR", str(tmp_path / "data"))
    with serve(FakeToggl(TOKEN)) as fake, DagsterInstance.ephemeral() as instance:
        resources: dict = {f"{v}_api": ApiSource(vendor=v) for v in API_VENDORS}
        resources["toggl_api"] = _toggl_source(fake, workspace_id)
        defs = Definitions(
            assets=[*api_assets, *validation_assets],
            asset_checks=validation_checks,
            jobs=api_jobs,
            resources={"staging": StagingDatabase(url=duck_db.url), **resources},
        )
        result = defs.resolve_job_def(api_nightly_jobs["toggl"].name).execute_in_process(
            instance=instance
        )
        assert result.success
        (m,) = result.asset_materializations_for_node("api_toggl_time_entries")
        paths = {q.path for q in fake.requests}
    if workspace_id:
        assert m.metadata["time_entries.full_export"].value["status"] == "complete"
        assert m.metadata["time_entries.records"].value == len(LANDED)
        assert SEARCH in paths and "/api/v9/me/time_entries" not in paths
    else:
        assert "time_entries.full_export" not in m.metadata
        assert m.metadata["time_entries.records"].value == 4  # the /me fixture
        assert SEARCH not in paths


def test_the_workspace_setting_reaches_the_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    from resources.settings import api_source_resource

    monkeypatch.setenv("STAGEPOST_TOGGL_WORKSPACE_ID", "777")
    monkeypatch.setenv("STAGEPOST_CLOCKIFY_WORKSPACE_ID", "ws1")
    assert api_source_resource("toggl").workspace_id == "777"
    assert api_source_resource("clockify").workspace_id == "ws1"
    assert api_source_resource("harvest").workspace_id == ""
