"""Harvest API v2 (help.getharvest.com/api-v2) mapped onto the canonical columns.

Requests carry `Authorization: Bearer <token>`, `Harvest-Account-Id` and a `User-Agent`
(Harvest answers 400 without it). Lists page by `links.next` (`per_page` up to 2000). The
documented limit is 100 requests per 15 s; over it Harvest answers 429 with `Retry-After`.
Harvest exposes no deletions (harvesthq/api#146): the nightly full pull (`from`/`to` on
`spent_date`) is a full export, and entries it lacks become tombstones.

| canonical | Harvest |
|---|---|
| entry_id | `harvest:` + `id` |
| employee_id / employee_name | `user.id` / `user.name` |
| project_code | `project.code`, else `project.id` (the same rule as `projects`) |
| task_code | `task.id` (the same as `project_tasks`) |
| work_date, hours | `spent_date`, `hours` |
| billable, bill_rate | `billable`, `billable_rate` |
| currency | `client.currency`, else the client's from `/clients`, else the default |
| approval_status | `is_closed` (approved through Timesheet Approval) -> approved, else submitted |
| approved_at | Harvest records no approval time: `updated_at` of a closed entry |
| description, updated_at | `notes`, `updated_at` |
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from pydantic import SecretStr

from connectors.sources.api import paging
from connectors.sources.api.http import DEFAULT_RETRY, ApiClient, RetryPolicy
from connectors.sources.api.rate_limit import RateLimit
from connectors.sources.api.values import decimal_text, instant_text, text, utc_text
from connectors.sources.api.vendor import ApiVendor, Defaults, Row, approved

BASE_URL = "https://api.harvestapp.com/v2"
#: help.getharvest.com/api-v2/introduction/overview/general: 100 requests per 15 seconds.
RATE_LIMIT = RateLimit(100, 15.0)
PER_PAGE = 2000  # the documented maximum (422 above it)

_INVOICE_STATUS = {"draft": "draft", "open": "released", "paid": "released", "closed": "released"}


def client(
    token: SecretStr,
    account_id: str,
    *,
    base_url: str = BASE_URL,
    user_agent: str = "stagepost",
    rate_limit: RateLimit = RATE_LIMIT,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> ApiClient:
    return ApiClient(
        "Harvest",
        base_url,
        auth_settings="STAGEPOST_HARVEST_TOKEN and STAGEPOST_HARVEST_ACCOUNT_ID",
        auth_headers={
            "Authorization": f"Bearer {token.get_secret_value()}",
            "Harvest-Account-Id": account_id,
        },
        headers={"User-Agent": user_agent},
        rate_limit=rate_limit,
        retry=retry,
    )


def _project_code(project: dict | None) -> str | None:
    if not project:
        return None
    return text(project.get("code")) or text(project.get("id"))


def _id(obj: dict | None) -> str | None:
    return text((obj or {}).get("id"))


class Harvest(ApiVendor):
    name = "harvest"
    reports_deletions = False
    master = ("employees", "projects", "project_tasks", "invoices")

    def __init__(self, client: ApiClient, defaults: Defaults) -> None:
        super().__init__(client, defaults)
        self._client_currency: dict[str, str] | None = None

    def _pages(self, path: str, key: str, **params: Any) -> Iterator[dict]:
        return paging.by_next_link(self.client, path, {**params, "per_page": PER_PAGE}, key)

    def _currency_of(self, client_obj: dict | None) -> str | None:
        """A client's currency: on the embedded object, else from `/clients` (read once)."""
        own = text((client_obj or {}).get("currency"))
        if own:
            return own
        if self._client_currency is None:
            self._client_currency = {
                str(c["id"]): str(c.get("currency") or "")
                for c in self._pages("clients", "clients")
            }
        return self._client_currency.get(_id(client_obj) or "") or self.defaults.currency

    def time_entry(self, e: dict) -> Row:
        closed = bool(e.get("is_closed"))
        updated = instant_text(e.get("updated_at"))
        user = e.get("user") or {}
        return {
            "entry_id": self.entry_id(e["id"]),
            "employee_id": _id(user),
            "employee_name": text(user.get("name")),
            "project_code": _project_code(e.get("project")),
            "task_code": _id(e.get("task")),
            "work_date": text(e.get("spent_date")),
            "hours": decimal_text(e.get("hours")),
            "billable": text(e.get("billable")),
            "bill_rate": decimal_text(e.get("billable_rate")),
            "currency": self._currency_of(e.get("client")),
            # Harvest records no approval time: a closed entry is approved at its updated_at.
            **(
                approved(updated, "updated_at")
                if closed
                else {"approval_status": "submitted", "approved_at": None, "approved_by": None}
            ),
            "description": text(e.get("notes")),
            "updated_at": updated,
            "deleted": "false",
        }

    def changed(self, since: datetime, until: datetime) -> Iterator[Row]:
        # Harvest filters by `updated_since` only; entries changed after `until` come again in
        # the next window (versioning lands them once).
        for e in self._pages("time_entries", "time_entries", updated_since=utc_text(since)):
            if not e.get("is_running"):
                yield self.time_entry(e)

    def dated(self, date_from: date, date_to: date) -> Iterator[Row]:
        params = {"from": date_from.isoformat(), "to": date_to.isoformat()}
        for e in self._pages("time_entries", "time_entries", **params):
            if not e.get("is_running"):
                yield self.time_entry(e)

    # -- master data --------------------------------------------------------------------------

    def snapshot(self, dataset: str) -> Iterator[Row]:
        return {
            "employees": self._employees,
            "projects": self._projects,
            "project_tasks": self._project_tasks,
            "invoices": self._invoices,
        }[dataset]()

    def _employees(self) -> Iterator[Row]:
        for u in self._pages("users", "users"):
            name = " ".join(p for p in (text(u.get("first_name")), text(u.get("last_name"))) if p)
            roles = u.get("roles") or []
            yield {
                "employee_id": text(u.get("id")),
                "employee_name": name or None,
                "legal_entity": self.defaults.legal_entity,
                "role": text(roles[0]) if roles else None,
                "cost_rate": decimal_text(u.get("cost_rate")),
                "currency": self.defaults.currency,
                "active": text(u.get("is_active")),
            }

    def _projects(self) -> Iterator[Row]:
        for p in self._pages("projects", "projects"):
            if p.get("is_fixed_fee"):
                method = "fixed_fee"
            elif p.get("is_billable") is False:
                method = "non_billable"
            else:
                method = "time_and_materials"
            c = p.get("client") or {}
            yield {
                "project_code": _project_code(p),
                "project_name": text(p.get("name")),
                "customer_id": _id(c),
                "customer_name": text(c.get("name")),
                "legal_entity": self.defaults.legal_entity,
                "currency": self._currency_of(c),
                "billing_method": method,
                "status": "open" if p.get("is_active") else "closed",
                "start_date": text(p.get("starts_on")),
                "end_date": text(p.get("ends_on")),
                "updated_at": instant_text(p.get("updated_at")),
            }

    def _project_tasks(self) -> Iterator[Row]:
        for a in self._pages("task_assignments", "task_assignments"):
            task = a.get("task") or {}
            yield {
                "project_code": _project_code(a.get("project")),
                "task_code": _id(task),
                "task_name": text(task.get("name")),
                "billable": text(a.get("billable")),
            }

    def _invoices(self) -> Iterator[Row]:
        for inv in self._pages("invoices", "invoices"):
            c = inv.get("client") or {}
            status = _INVOICE_STATUS.get(str(inv.get("state")), text(inv.get("state")))
            for no, li in enumerate(inv.get("line_items") or [], start=1):
                yield {
                    "invoice_id": text(inv.get("number")) or text(inv.get("id")),
                    "project_code": _project_code(li.get("project")),
                    "customer_id": _id(c),
                    "currency": text(inv.get("currency")),
                    "issue_date": text(inv.get("issue_date")),
                    "due_date": text(inv.get("due_date")),
                    "status": status,
                    "line_no": str(no),
                    # Harvest's API does not link a line to its time entries: a line lands
                    # as an adjustment billed as given, never as a time line without entries.
                    "line_kind": "adjustment",
                    "description": text(li.get("description")),
                    "quantity": decimal_text(li.get("quantity")),
                    "unit_price": decimal_text(li.get("unit_price")),
                    "amount": decimal_text(li.get("amount")),
                    "entry_ids": None,
                    "updated_at": instant_text(inv.get("updated_at")),
                }
