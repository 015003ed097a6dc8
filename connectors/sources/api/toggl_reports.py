"""Toggl Track workspace-wide: the Reports API v3 detailed report, every member's entries with
one admin's token (`STAGEPOST_TOGGL_WORKSPACE_ID` set; unset, `toggl.Toggl` reads the token
owner's own entries through `/me`).

What the published docs say (engineering.toggl.com/docs/track/reports/detailed_reports,
developers.track.toggl.com/docs/reports/detailed_reports, reports_start), and we rely on:
`POST {base}/reports/api/v3/workspace/{workspace_id}/search/time_entries` with a JSON body:
`start_date`, `end_date` (a date; "should be greater than Start date"), `page_size`,
`first_id`, `first_row_number`, `first_timestamp`, `grouped` (default false), `hide_amounts`
(default false), `order_by`, `order_dir` (left at their defaults), `enrich_response`
("optional, default false");
pagination "via X-Next-ID and X-Next-Row-Number headers returned in the response", fed back
as `first_id` / `first_row_number` (and `X-Next-Timestamp` as `first_timestamp` when sent)
until the headers are absent. Private reports answer 403 to anyone but an admin or the owner.
Same base host as v9, same Basic auth (token, `api_token`), so one shared throttle.

Where the docs are silent (and what we do): the response's shape is not spelled out on the
page; we read what public client libraries and integrations read (toggl_python's report
schema, Singer/Meltano taps, the Go and TypeScript clients we checked), a list of rows
`{user_id, username, project_id, task_id, billable, description, tag_ids,
hourly_rate_in_cents, billable_amount_in_cents, currency, row_number, time_entries: [{id,
seconds, start, stop, at, at_tz}]}`, one entry per row when not grouped (a row with several
is still split per entry). What `enrich_response` adds is not documented: it is not asked for,
and project names and clients come from v9's `/workspaces/{wid}/projects` and `/clients`
(`toggl_rates.py`). Whether `end_date` is inclusive and in which zone dates are read is not
said (third-party notes say each member's profile zone): we ask a day more on each side and
keep the entries whose local start date (`STAGEPOST_API_TIMEZONE`) is in range, as for
Clockify. The page size maximum is not given: we ask 50 (the default third parties name).

No deletions and no "changed since" filter: `changed()` reads by work date (the window's local
dates, `change_cursor = False`), and the nightly full pull (`dated()`, a full export scoped to
`toggl:` keys) turns entries gone from the recent range into tombstones. An entry edited in a
past week is found by whichever window covers its work date (the look-back, the full pull).

| canonical | Reports API v3 row / entry |
|---|---|
| entry_id | `toggl:` + entry `id` (the same ids as v9: switching modes keeps keys) |
| employee_id / employee_name | `user_id` / `username` |
| project_code, task_code | `project_id`, `task_id` (else `General`) |
| work_date, hours, duration_seconds | local date of entry `start`; entry `seconds` |
| bill_rate, currency | `hourly_rate_in_cents` / 100 exactly and `currency` when sent; else Toggl's rate hierarchy (`toggl_rates.py`), as in `/me` mode |
| updated_at, approval | entry `at`; `STAGEPOST_API_APPROVAL` |
| deleted | always false (the full pull finds deletions) |
| project_name, customer_id/name | v9 projects and clients (client name as id, as `/me` mode and files) |
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from pydantic import SecretStr

from connectors.sources.api import paging, toggl_rates
from connectors.sources.api.errors import ApiAuthError, ApiResponseError
from connectors.sources.api.http import DEFAULT_RETRY, ApiClient, RetryPolicy
from connectors.sources.api.rate_limit import RateLimit
from connectors.sources.api.toggl import RATE_LIMIT, Toggl
from connectors.sources.api.values import (
    decimal_text,
    hours_from_seconds,
    instant_text,
    local_date,
    text,
    whole_seconds,
)
from connectors.sources.api.vendor import GENERAL_TASK, NO_CLIENT, Defaults, Row

log = logging.getLogger("stagepost.api")

PAGE_SIZE = 50
#: The headers that carry the next page's start, and the body fields they go back as.
NEXT = (
    ("X-Next-ID", "first_id"),
    ("X-Next-Row-Number", "first_row_number"),
    ("X-Next-Timestamp", "first_timestamp"),
)


def reports_url(v9_url: str) -> str:
    """The Reports API v3 base of a v9 base URL (`…/api/v9` -> `…/reports/api/v3`)."""
    base = v9_url.rstrip("/")
    if not base.endswith("/api/v9"):
        raise ValueError(
            f"STAGEPOST_TOGGL_URL {v9_url!r} does not end in /api/v9: the Reports API's URL "
            "cannot be derived from it"
        )
    return base.removesuffix("/api/v9") + "/reports/api/v3"


def reports_client(
    token: SecretStr,
    v9: ApiClient,
    *,
    rate_limit: RateLimit = RATE_LIMIT,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> ApiClient:
    """The Reports API's client: v9's token and host, and v9's throttle (one shared limit)."""
    c = ApiClient(
        "Toggl Reports",
        reports_url(v9.base_url),
        auth_settings="STAGEPOST_TOGGL_TOKEN (an admin's) and STAGEPOST_TOGGL_WORKSPACE_ID",
        auth=httpx.BasicAuth(token.get_secret_value(), "api_token"),
        rate_limit=rate_limit,
        retry=retry,
        retry_statuses=frozenset({402, 408, 429, 500, 502, 503, 504}),
        retry_after_headers=("Retry-After", "X-Toggl-Quota-Resets-In"),
    )
    c.throttle = v9.throttle
    return c


def _cents(value: Any) -> Decimal | None:
    """Cents as an exact amount (`12345` -> `123.45`); None stays None."""
    return None if value is None else Decimal(str(value)) / 100


class TogglWorkspace(Toggl):
    """Every member's entries of one workspace (an admin's token)."""

    reports_deletions = False
    change_cursor = False

    def __init__(
        self,
        client: ApiClient,
        defaults: Defaults,
        workspace_id: str,
        reports: ApiClient,
        page_size: int = PAGE_SIZE,
    ) -> None:
        super().__init__(client, defaults)
        self.workspace_id = workspace_id
        self.reports = reports
        self.page_size = page_size

    # -- reading ----------------------------------------------------------------------------

    def _search(self, start: date, end: date) -> Iterator[dict]:
        """Every row of the detailed report from `start` to `end`, page after page."""
        path = f"workspace/{self.workspace_id}/search/time_entries"
        body: dict[str, Any] = {
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
            "grouped": False,
            "hide_amounts": False,
            "page_size": self.page_size,
        }
        seen: set[tuple] = set()
        for _ in range(paging.MAX_PAGES):
            before = self.reports.requests
            page = self.reports.post(path, body)
            self.client.requests += self.reports.requests - before  # one count per pull
            rows = page.data if page.data is not None else []
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise ApiResponseError(
                    f"{self.reports.vendor} API POST {path}: expected a list of rows, got "
                    f"{type(rows).__name__}"
                )
            yield from rows
            cursor = {f: page.headers.get(h) for h, f in NEXT if page.headers.get(h)}
            if "first_id" not in cursor and "first_row_number" not in cursor:
                return
            try:
                nxt = {f: int(v) for f, v in cursor.items() if v is not None}
            except ValueError:
                raise ApiResponseError(
                    f"{self.reports.vendor} API POST {path}: next-page headers {cursor} are "
                    "not numbers"
                ) from None
            key = tuple(sorted(nxt.items()))
            if key in seen:
                raise ApiResponseError(f"{self.reports.vendor} API: page {key} repeats; stopped")
            seen.add(key)
            body = {k: v for k, v in body.items() if not k.startswith("first_")} | nxt
        raise ApiResponseError(f"{self.reports.vendor} API POST {path}: too many pages")

    def _workspace(self) -> tuple[toggl_rates.WorkspaceRates | None, dict[str, str]]:
        """The workspace's rates, project names and client names (None, {} when the token may
        not read them: the entries still land, with the report's own rates)."""
        rates = self._rates(self.workspace_id)
        if rates is None:
            return None, {}
        try:
            return rates, toggl_rates.client_names(self.client, self.workspace_id)
        except ApiAuthError as e:
            log.warning("Toggl clients of workspace %s not readable (%s)", self.workspace_id, e)
            return rates, {}

    def report_entry(
        self,
        row: dict,
        e: dict,
        rates: toggl_rates.WorkspaceRates | None,
        clients: dict[str, str],
    ) -> Row:
        project, user = text(row.get("project_id")), text(row.get("user_id"))
        billable = bool(row.get("billable"))
        cents = _cents(row.get("hourly_rate_in_cents"))
        # 0 or null: no rate in the report (as `toggl_rates` reads a 0 rate: none set).
        rate = cents if billable and cents is not None and cents > 0 else None
        currency = text(row.get("currency"))
        if billable and rate is None and rates:  # the report hid it: Toggl's hierarchy,
            rate = rates.rate(project, user)  # in the project's or workspace's currency
            currency = rates.currency(project) or currency
        if currency is None and rates:
            currency = rates.currency(project)
        client_id = rates.project_client.get(project or "") if rates else None
        client = clients.get(client_id or "")
        updated = instant_text(e.get("at"))
        seconds = e.get("seconds")
        return {
            "entry_id": self.entry_id(e["id"]),
            "employee_id": user,
            "employee_name": text(row.get("username")),
            "project_code": project,
            "task_code": text(row.get("task_id")) or GENERAL_TASK,
            "work_date": local_date(e.get("start"), self.defaults.zone),
            "hours": hours_from_seconds(seconds),
            "duration_seconds": whole_seconds(seconds),
            "billable": text(row.get("billable")),
            "bill_rate": decimal_text(rate),
            "currency": currency or self.defaults.currency,
            **self.approval(updated, "updated_at"),
            "description": text(row.get("description")),
            "updated_at": updated,
            "deleted": "false",
            "project_name": rates.project_name.get(project or "") if rates else None,
            "customer_id": client or NO_CLIENT,
            "customer_name": client,
            "task_name": None if row.get("task_id") else GENERAL_TASK,
        }

    def dated(self, date_from: date, date_to: date) -> Iterator[Row]:
        # Which zone the report reads dates in is not documented: a day more on each side,
        # and only the entries whose local work date is in range.
        rows = list(
            self._search(date_from - timedelta(days=1), date_to + timedelta(days=2))
        )  # the whole report first: the rates are read once, after it
        if not rows:
            return
        rates, clients = self._workspace()
        first, last = date_from.isoformat(), date_to.isoformat()
        for row in rows:
            for e in row.get("time_entries") or []:
                seconds = e.get("seconds")
                if not e.get("stop") or seconds is None or int(seconds) < 0:
                    continue  # running: a later pull takes it once stopped
                out = self.report_entry(row, e, rates, clients)
                if out["work_date"] and first <= out["work_date"] <= last:
                    yield out

    def changed(self, since: datetime, until: datetime) -> Iterator[Row]:
        """No change filter in the Reports API: every entry of the window's local dates."""
        zone = self.defaults.zone
        return self.dated(since.astimezone(zone).date(), until.astimezone(zone).date())

    def close(self) -> None:
        self.reports.close()
        super().close()
