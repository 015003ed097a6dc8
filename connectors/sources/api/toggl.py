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
| project_code, task_code | `project_id`, `task_id` (often empty: then `General`, as in files) |
| work_date, hours | local date of `start`; `duration` seconds / 3600 (4 decimals, half up) |
| duration_seconds | `duration` (the amount is computed from it exactly) |
| billable | `billable` |
| bill_rate, currency | none on an entry: Toggl's rate hierarchy (`toggl_rates.py`: project member, project, workspace member, workspace default) and the project's or workspace's currency, else `STAGEPOST_DEFAULT_CURRENCY` |
| approval | none in Toggl: `STAGEPOST_API_APPROVAL`, approved at `at` (`updated_at`) |
| description, updated_at | `description`, `at` |
| deleted | `server_deleted_at` set |

Running entries (negative `duration`) are left for a later pull: stopping one changes `at`.
`since` reaches at most about three months back (older fails: toggl/mobileapp#405), and
`/me` holds only the token owner's entries: one token per person to pull, or, for a team,
`STAGEPOST_TOGGL_WORKSPACE_ID` with an admin's token: the Reports API, workspace-wide but
without deletions (`toggl_reports.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
from pydantic import SecretStr

from connectors.sources.api import paging, toggl_rates
from connectors.sources.api.errors import ApiAuthError
from connectors.sources.api.http import DEFAULT_RETRY, ApiClient, RetryPolicy
from connectors.sources.api.rate_limit import RateLimit
from connectors.sources.api.values import (
    decimal_text,
    hours_from_seconds,
    instant_text,
    local_date,
    text,
    whole_seconds,
)
from connectors.sources.api.vendor import GENERAL_TASK, NO_CLIENT, ApiVendor, Row

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
    derives_master = True
    reports_deletions = True

    def time_entry(self, e: dict, rates: toggl_rates.WorkspaceRates | None = None) -> Row:
        updated = instant_text(e.get("at"))
        deleted = e.get("server_deleted_at") is not None
        duration = e.get("duration")
        finished = duration is not None and duration >= 0
        client = text(e.get("client_name"))
        project, user = text(e.get("project_id")), text(e.get("user_id"))
        rate = rates.rate(project, user) if rates and e.get("billable") else None
        return {
            "entry_id": self.entry_id(e["id"]),
            "employee_id": text(e.get("user_id")),
            "employee_name": text(e.get("user_name")),
            "project_code": text(e.get("project_id")),
            # Toggl needs no task: one task `General` per project, as the file mapping does.
            "task_code": text(e.get("task_id")) or GENERAL_TASK,
            "work_date": local_date(e.get("start"), self.defaults.zone),
            # A deleted running entry has a negative duration: no hours, only the tombstone.
            "hours": hours_from_seconds(duration) if finished else None,
            "duration_seconds": whole_seconds(duration) if finished else None,
            "billable": text(e.get("billable")),
            "bill_rate": decimal_text(rate),
            "currency": (rates.currency(project) if rates else None) or self.defaults.currency,
            **self.approval(updated, "updated_at"),
            "description": text(e.get("description")),
            "updated_at": updated,
            "deleted": "true" if deleted else "false",
            # For derived master data (meta=true): Toggl's entry has a client name, no id.
            "project_name": text(e.get("project_name")),
            "customer_id": client or NO_CLIENT,
            "customer_name": client,
            "task_name": text(e.get("task_name")) or (None if e.get("task_id") else GENERAL_TASK),
        }

    def _rates(self, workspace: str) -> toggl_rates.WorkspaceRates | None:
        """A workspace's rates; None when the token may not see them (Toggl lets only admins
        see rates, by workspace setting): the entries still land, without a rate."""
        try:
            return toggl_rates.read(self.client, workspace)
        except ApiAuthError as e:
            log.warning(
                "Toggl rates of workspace %s not readable (%s): billable entries land without "
                "a rate (TE_RATE_MISSING unless a rate card covers them)",
                workspace,
                e,
            )
            return None

    def changed(self, since: datetime, until: datetime) -> Iterator[Row]:
        if until - since > MAX_SINCE:
            log.warning(
                "Toggl answers changes of the last three months only: asking since %s, not %s",
                (until - MAX_SINCE).isoformat(),
                since.isoformat(),
            )
            since = until - MAX_SINCE
        params = {"since": int(since.timestamp()), "meta": "true"}
        entries = [
            e
            for e in paging.single(self.client, "me/time_entries", params)
            # a running entry waits for a later pull (stopping it changes `at`)
            if not (int(e.get("duration") or 0) < 0 and e.get("server_deleted_at") is None)
        ]
        # The rates of the workspaces whose billable entries need one (`toggl_rates.read`).
        workspaces = {
            text(e.get("workspace_id") or e.get("wid"))
            for e in entries
            if e.get("billable") and e.get("server_deleted_at") is None
        }
        rates = {w: r for w in sorted(w for w in workspaces if w) if (r := self._rates(w))}
        for e in entries:
            yield self.time_entry(e, rates.get(text(e.get("workspace_id") or e.get("wid")) or ""))
