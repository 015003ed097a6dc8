"""Toggl Track API v9 (developers.track.toggl.com/docs/api/time_entries) mapped onto the
canonical columns.

`GET /me/time_entries?since=<unix>` returns the token owner's entries modified since then,
**deleted ones included** (`server_deleted_at` set): those land as tombstone versions
(`deleted=true`), the same path a PSA's deletion marker takes. One answer holds everything
(no paging); `meta=true` adds project, client and user names. Authentication is HTTP Basic
with the token as user and `api_token` as password. Limits (support.toggl.com, "API & Webhook
limits", from 2025-09-05): per user and organisation per hour, 30 on Free, 240 Starter, 600
Premium, and `/me` requests 30 per hour; over the quota Toggl answers 402 with
`X-Toggl-Quota-Resets-In` (seconds), and 429 when requests come faster than about one per
second. Toggl stores UTC: the work date is the local date of `start` in `STAGEPOST_API_TIMEZONE`.

| canonical | Toggl |
|---|---|
| entry_id | `toggl:` + `id` |
| employee_id / employee_name | `user_id` / `user_name` (meta) |
| project_code, task_code | `project_id`, `task_id` (often empty: Toggl has no required task) |
| work_date, hours | local date of `start`; `duration` seconds / 3600 (4 decimals, half up) |
| billable | `billable` |
| bill_rate, currency | none on an entry: a rate card, and `STAGEPOST_API_DEFAULT_CURRENCY` |
| approval | none in Toggl: `STAGEPOST_API_APPROVAL` |
| description, updated_at | `description`, `at` |
| deleted | `server_deleted_at` set |

Running entries (negative `duration`) are left for a later pull: stopping one changes `at`.
`since` reaches at most about three months back (older fails: toggl/mobileapp#405), and
`/me` holds only the token owner's entries: one token per person to pull, or Toggl's Reports
API (workspace-wide, but without deletions) for a team (not built yet).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
from pydantic import SecretStr

from connectors.sources.api import paging
from connectors.sources.api.http import DEFAULT_RETRY, ApiClient, RetryPolicy
from connectors.sources.api.rate_limit import RateLimit
from connectors.sources.api.values import hours_from_seconds, instant_text, local_date, text
from connectors.sources.api.vendor import ApiVendor, Row

log = logging.getLogger("stagepost.api")

BASE_URL = "https://api.track.toggl.com/api/v9"
#: About one request per second (429 beyond); the hourly quota answers 402.
RATE_LIMIT = RateLimit(1, 1.0)
#: `since` further back than about three months fails (toggl/mobileapp#405): kept inside.
MAX_SINCE = timedelta(days=89)


def client(
    token: SecretStr,
    *,
    base_url: str = BASE_URL,
    rate_limit: RateLimit = RATE_LIMIT,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> ApiClient:
    return ApiClient(
        "Toggl",
        base_url,
        auth_settings="STAGEPOST_TOGGL_TOKEN",
        auth=httpx.BasicAuth(token.get_secret_value(), "api_token"),
        rate_limit=rate_limit,
        retry=retry,
        retry_statuses=frozenset({402, 408, 429, 500, 502, 503, 504}),
        retry_after_headers=("Retry-After", "X-Toggl-Quota-Resets-In"),
    )


class Toggl(ApiVendor):
    name = "toggl"
    reports_deletions = True

    def time_entry(self, e: dict) -> Row:
        updated = instant_text(e.get("at"))
        deleted = e.get("server_deleted_at") is not None
        duration = e.get("duration")
        status, approved_at, approved_by = self.approval(updated)
        return {
            "entry_id": self.entry_id(e["id"]),
            "employee_id": text(e.get("user_id")),
            "employee_name": text(e.get("user_name")),
            "project_code": text(e.get("project_id")),
            "task_code": text(e.get("task_id")),
            "work_date": local_date(e.get("start"), self.defaults.zone),
            # A deleted running entry has a negative duration: no hours, only the tombstone.
            "hours": hours_from_seconds(duration)
            if duration is not None and duration >= 0
            else None,
            "billable": text(e.get("billable")),
            "bill_rate": None,
            "currency": self.defaults.currency,
            "approval_status": status,
            "approved_at": approved_at,
            "approved_by": approved_by,
            "description": text(e.get("description")),
            "updated_at": updated,
            "deleted": "true" if deleted else "false",
        }

    def changed(self, since: datetime, until: datetime) -> Iterator[Row]:
        if until - since > MAX_SINCE:
            log.warning(
                "Toggl answers changes of the last three months only: asking since %s, not %s",
                (until - MAX_SINCE).isoformat(),
                since.isoformat(),
            )
            since = until - MAX_SINCE
        params = {"since": int(since.timestamp()), "meta": "true"}
        for e in paging.single(self.client, "me/time_entries", params):
            duration = e.get("duration")
            if duration is not None and int(duration) < 0 and e.get("server_deleted_at") is None:
                continue  # still running
            yield self.time_entry(e)
