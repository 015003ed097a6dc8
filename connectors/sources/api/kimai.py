"""Kimai REST API (`kimai/kimai` `src/API/TimesheetController.php`) mapped onto the canonical
columns.

`GET /api/timesheets?user=all&modified_after=<UTC Y-m-d\\TH:i:s>&full=true&orderBy=id&order=ASC`
pages by `page`/`size` (max 500) and the `X-Total-Pages` header. Ordered by id, a record changed
while the pull pages stays on its page (paging an updated-ordered set drops rows). Kimai 2 API
tokens go in `Authorization: Bearer`. Self-hosted: no documented rate limit (we stay under 10
requests per second). The timesheet has no deletion flag: the nightly full pull
(`begin`/`end`) is a full export. `begin` is written with the user's offset, so its date is
the local work date.

| canonical | Kimai |
|---|---|
| entry_id | `kimai:` + `id` |
| employee_id / employee_name | `user.username` / `user.alias`, else the username |
| project_code, task_code | `project.number`, else `project.id`; `activity.id` |
| work_date, hours | date of `begin` as written; `duration` seconds / 3600 (4 decimals) |
| duration_seconds | `duration` (amounts come from it exactly: 0:07 x 95 = 11.08) |
| billable, bill_rate | `billable`; `hourlyRate` (none for a fixed-price entry) |
| fixed_amount | `fixedRate` (a fixed-price entry's amount: 150 stays 150) |
| source_amount | `rate` (Kimai's amount) of a billable entry, checked against the computed one |
| currency | `project.customer.currency` |
| approval | none in core: `STAGEPOST_API_APPROVAL`, at `modifiedAt` (else `end`) |
| description, updated_at | `description`; `modifiedAt` where the version sends it |
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

from pydantic import SecretStr

from connectors.sources.api import paging
from connectors.sources.api.http import DEFAULT_RETRY, ApiClient, RetryPolicy
from connectors.sources.api.rate_limit import RateLimit
from connectors.sources.api.values import (
    decimal_text,
    hours_from_seconds,
    instant_text,
    text,
    whole_seconds,
)
from connectors.sources.api.vendor import ApiVendor, Row

RATE_LIMIT = RateLimit(10, 1.0)
PAGE_SIZE = 500  # the documented maximum


def client(
    token: SecretStr,
    base_url: str,
    *,
    rate_limit: RateLimit = RATE_LIMIT,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> ApiClient:
    return ApiClient(
        "Kimai",
        base_url.rstrip("/") + ("" if base_url.rstrip("/").endswith("/api") else "/api"),
        auth_settings="STAGEPOST_KIMAI_TOKEN (and STAGEPOST_KIMAI_URL)",
        auth_headers={"Authorization": f"Bearer {token.get_secret_value()}"},
        rate_limit=rate_limit,
        retry=retry,
    )


def _obj(value: Any) -> dict:
    return value if isinstance(value, dict) else {"id": value} if value is not None else {}


def _fixed(e: dict) -> str | None:
    """A fixed-price entry's amount (`fixedRate`): it is the amount, whatever the duration."""
    return decimal_text(e.get("fixedRate")) if e.get("fixedRate") is not None else None


class Kimai(ApiVendor):
    name = "kimai"
    derives_master = True
    reports_deletions = False

    def time_entry(self, e: dict) -> Row:
        user, project, activity = (
            _obj(e.get("user")),
            _obj(e.get("project")),
            _obj(e.get("activity")),
        )
        customer = _obj(project.get("customer"))
        updated = instant_text(e.get("modifiedAt"))
        if updated:
            approval = self.approval(updated, "updated_at")
        else:  # a Kimai before modifiedAt: the end of the work is the earliest approval
            approval = self.approval(instant_text(e.get("end")), "column:end")
        begin = text(e.get("begin"))
        fixed = _fixed(e)
        billable = bool(e.get("billable"))
        return {
            "entry_id": self.entry_id(e["id"]),
            "employee_id": text(user.get("username")) or text(user.get("id")),
            "employee_name": text(user.get("alias")) or text(user.get("username")),
            "project_code": text(project.get("number")) or text(project.get("id")),
            "task_code": text(activity.get("id")),
            "work_date": begin[:10] if begin else None,
            "hours": hours_from_seconds(e.get("duration")),
            "duration_seconds": whole_seconds(e.get("duration")),
            "billable": text(e.get("billable")),
            # A fixed-price entry's hourly rate means nothing: its amount is `fixed_amount`.
            "bill_rate": None if fixed is not None else decimal_text(e.get("hourlyRate")),
            "fixed_amount": fixed,
            # Kimai's own amount (`rate`), checked against rate x duration (TE_AMOUNT_MISMATCH);
            # Kimai prices non-billable entries too: only a billable entry's is an amount.
            "source_amount": decimal_text(e.get("rate")) if billable else None,
            "currency": text(customer.get("currency")) or self.defaults.currency,
            **approval,
            "description": text(e.get("description")),
            "updated_at": updated,
            "deleted": "false",
            # For derived master data.
            "project_name": text(project.get("name")),
            "customer_id": text(customer.get("number")) or text(customer.get("id")),
            "customer_name": text(customer.get("name")),
            "task_name": text(activity.get("name")),
        }

    def _pull(self, **params: Any) -> Iterator[Row]:
        base = {"user": "all", "full": "true", "orderBy": "id", "order": "ASC", **params}
        for e in paging.by_total_pages(self.client, "timesheets", base, size=PAGE_SIZE):
            if e.get("end") is not None:  # a running timesheet has no end yet
                yield self.time_entry(e)

    def changed(self, since: datetime, until: datetime) -> Iterator[Row]:
        return self._pull(modified_after=since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"))

    def dated(self, date_from: date, date_to: date) -> Iterator[Row]:
        return self._pull(begin=f"{date_from}T00:00:00", end=f"{date_to}T23:59:59")
