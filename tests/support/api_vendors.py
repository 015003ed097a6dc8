"""Vendor clients pointed at the local fakes of `vendor_api.py`, with quick retries."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from pydantic import SecretStr

from connectors.sources.api import clockify, harvest, kimai, toggl, toggl_reports
from connectors.sources.api.http import RetryPolicy
from connectors.sources.api.rate_limit import RateLimit
from connectors.sources.api.vendor import Defaults
from tests.support.vendor_api import FakeClockify, FakeHarvest, FakeKimai, FakeToggl

QUICK = RetryPolicy(attempts=4, base=0.01, cap=0.05, max_wait=5.0)
NO_LIMIT = RateLimit()
DEFAULTS = Defaults(currency="EUR", legal_entity="DE01", zone=ZoneInfo("Europe/Berlin"))


def harvest_vendor(
    fake: FakeHarvest, token: str | None = None, defaults: Defaults = DEFAULTS
) -> harvest.Harvest:
    c = harvest.client(
        SecretStr(token or fake.token),
        fake.account_id,
        base_url=f"{fake.url}/v2",
        user_agent="stagepost tests (ops@example.invalid)",
        rate_limit=NO_LIMIT,
        retry=QUICK,
    )
    return harvest.Harvest(c, defaults)


def toggl_vendor(
    fake: FakeToggl, token: str | None = None, defaults: Defaults = DEFAULTS
) -> toggl.Toggl:
    c = toggl.client(
        SecretStr(token or fake.token),
        base_url=f"{fake.url}/api/v9",
        rate_limit=NO_LIMIT,
        retry=QUICK,
    )
    return toggl.Toggl(c, defaults)


def toggl_workspace_vendor(
    fake: FakeToggl, token: str | None = None, defaults: Defaults = DEFAULTS
) -> toggl_reports.TogglWorkspace:
    """Toggl workspace-wide (Reports API v3), asking pages of 50 (the fake answers 2)."""
    secret = SecretStr(token or fake.token)
    c = toggl.client(secret, base_url=f"{fake.url}/api/v9", rate_limit=NO_LIMIT, retry=QUICK)
    reports = toggl_reports.reports_client(secret, c, rate_limit=NO_LIMIT, retry=QUICK)
    return toggl_reports.TogglWorkspace(c, defaults, str(fake.workspace["id"]), reports)


def kimai_vendor(
    fake: FakeKimai, token: str | None = None, defaults: Defaults = DEFAULTS
) -> kimai.Kimai:
    c = kimai.client(SecretStr(token or fake.token), fake.url, rate_limit=NO_LIMIT, retry=QUICK)
    return kimai.Kimai(c, defaults)


def clockify_vendor(
    fake: FakeClockify, token: str | None = None, defaults: Defaults = DEFAULTS
) -> clockify.Clockify:
    c = clockify.client(
        SecretStr(token or fake.token),
        base_url=f"{fake.url}/api/v1",
        rate_limit=NO_LIMIT,
        retry=QUICK,
    )
    return clockify.Clockify(c, defaults, fake.workspace_id, page_size=2)
