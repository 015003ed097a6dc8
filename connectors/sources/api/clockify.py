"""Clockify API v1 (docs.clockify.me, getTimeEntries) mapped onto the canonical columns.

`GET /workspaces/{ws}/users` (the members), then per member
`GET /workspaces/{ws}/user/{id}/time-entries?start=&end=&hydrated=true`, paged by `page` and
`page-size` until a page is short. The header `X-Api-Key` carries the token. Limit: 50
requests per second on paid plans (clockify.me/help/getting-started/webhook-and-api-limitations);
we stay under 10. Clockify filters entries by **start time**, not by change time, and
reports no deletions: each pull asks for entries started in the window (look-back included),
and the nightly full pull over the recent range is a full export that finds back-dated edits
older than the look-back and deletions. Times are UTC; the work date is the local date of the
start in `STAGEPOST_API_TIMEZONE`.

| canonical | Clockify |
|---|---|
| entry_id | `clockify:` + `id` |
| employee_id / employee_name | `userId` / the member's `name` |
| project_code, task_code | `projectId`, `taskId` |
| work_date, hours | local date of `timeInterval.start`; `timeInterval.duration` (ISO 8601) |
| duration_seconds | `timeInterval.duration` in whole seconds (the amount is computed from it) |
| billable | `billable` |
| bill_rate, currency | `hourlyRate.amount` / 100 (cents), `hourlyRate.currency` |
| approval | `approvalStatus` APPROVED where sent, else `STAGEPOST_API_APPROVAL`; at `timeInterval.end` |
| description, updated_at | `description`; none (Clockify sends no change time) |
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from pydantic import SecretStr

from connectors.sources.api import paging
from connectors.sources.api.http import DEFAULT_RETRY, ApiClient, RetryPolicy
from connectors.sources.api.rate_limit import RateLimit
from connectors.sources.api.values import (
    decimal_text,
    hours_from_seconds,
    local_date,
    seconds_of_iso_duration,
    text,
    whole_seconds,
)
from connectors.sources.api.vendor import (
    GENERAL_TASK,
    NO_CLIENT,
    ApiVendor,
    Defaults,
    Row,
    approved,
)

BASE_URL = "https://api.clockify.me/api/v1"
RATE_LIMIT = RateLimit(10, 1.0)
PAGE_SIZE = 200


def client(
    token: SecretStr,
    *,
    base_url: str = BASE_URL,
    rate_limit: RateLimit = RATE_LIMIT,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> ApiClient:
    return ApiClient(
        "Clockify",
        base_url,
        auth_settings="STAGEPOST_CLOCKIFY_TOKEN (and STAGEPOST_CLOCKIFY_WORKSPACE_ID)",
        auth_headers={"X-Api-Key": token.get_secret_value()},
        rate_limit=rate_limit,
        retry=retry,
    )


def _z(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Clockify(ApiVendor):
    name = "clockify"
    derives_master = True
    reports_deletions = False
    change_cursor = False

    def __init__(
        self, client: ApiClient, defaults: Defaults, workspace_id: str, page_size: int = PAGE_SIZE
    ) -> None:
        super().__init__(client, defaults)
        self.workspace_id = workspace_id
        self.page_size = page_size

    def time_entry(self, e: dict, user_name: str | None) -> Row:
        interval = e.get("timeInterval") or {}
        rate = e.get("hourlyRate") or {}
        amount = rate.get("amount")
        # Clockify sends no approval or change time: the end of the work is the earliest
        # moment it can have been approved (documented in docs/sources_api.md).
        end = text(interval.get("end"))
        if e.get("approvalStatus") == "APPROVED":
            approval = approved(end, "column:timeInterval.end")
        else:
            approval = self.approval(end, "column:timeInterval.end")
        seconds = seconds_of_iso_duration(interval.get("duration"))
        # `hydrated=true` embeds the project (with its client) and the task.
        project, task = e.get("project") or {}, e.get("task") or {}
        return {
            "entry_id": self.entry_id(e["id"]),
            "employee_id": text(e.get("userId")),
            "employee_name": user_name,
            "project_code": text(e.get("projectId")) or text(project.get("id")),
            # No task on the entry: one task `General` per project, as the file mapping does.
            "task_code": text(e.get("taskId")) or text(task.get("id")) or GENERAL_TASK,
            "work_date": local_date(interval.get("start"), self.defaults.zone),
            "hours": hours_from_seconds(seconds),
            "duration_seconds": whole_seconds(seconds),
            "billable": text(e.get("billable")),
            "bill_rate": decimal_text(Decimal(str(amount)) / 100) if amount is not None else None,
            "currency": text(rate.get("currency")) or self.defaults.currency,
            **approval,
            "description": text(e.get("description")),
            "updated_at": None,
            "deleted": "false",
            # For derived master data.
            "project_name": text(project.get("name")),
            "customer_id": text(project.get("clientId")) or NO_CLIENT,
            "customer_name": text(project.get("clientName")),
            "task_name": text(task.get("name"))
            or (None if e.get("taskId") or task.get("id") else GENERAL_TASK),
        }

    def _members(self) -> Iterator[dict]:
        path = f"workspaces/{self.workspace_id}/users"
        return paging.by_short_page(self.client, path, {}, size=self.page_size)

    def _pull(self, start: datetime, end: datetime) -> Iterator[Row]:
        for u in list(self._members()):  # every member first: paging stays one list at a time
            path = f"workspaces/{self.workspace_id}/user/{u['id']}/time-entries"
            params = {"start": _z(start), "end": _z(end), "hydrated": "true"}
            for e in paging.by_short_page(self.client, path, params, size=self.page_size):
                if (e.get("timeInterval") or {}).get("end"):
                    yield self.time_entry(e, text(u.get("name")))

    def changed(self, since: datetime, until: datetime) -> Iterator[Row]:
        return self._pull(since, until)

    def dated(self, date_from: date, date_to: date) -> Iterator[Row]:
        # Work dates are local: ask a day more on each side, keep the entries dated in range.
        lo = datetime.combine(date_from, time(), UTC) - timedelta(days=1)
        hi = datetime.combine(date_to, time(), UTC) + timedelta(days=2)
        first, last = date_from.isoformat(), date_to.isoformat()
        for row in self._pull(lo, hi):
            if row["work_date"] and first <= row["work_date"] <= last:
                yield row
