"""Toggl Track's billable rates, which a v9 time entry does not carry.

Toggl prices an entry by the most specific rate set (Toggl help, "Billable rates"): the
person's rate on the project (`/workspaces/{wid}/project_users`), else the project's rate
(`/workspaces/{wid}/projects`), else the person's workspace rate
(`/workspaces/{wid}/workspace_users`), else the workspace default (`/workspaces/{wid}`,
`default_hourly_rate`). Rates are in the project's currency, else the workspace's
`default_currency`. Read once per pull and workspace (four requests, and one more per page of
projects); an entry that no level prices, or whose project the list lacks (so its own rate is
unknown), lands without a rate (quarantined TE_RATE_MISSING unless a rate card covers it),
never at a less specific, guessed one. Toggl applies a changed rate to past entries unless told otherwise: the
rate read is today's, which is what Toggl's own reports show.

The projects' names and clients come with the same list: the Reports API's entries carry
ids only (`toggl_reports.py`), and their derived master data needs the names
(`client_names` reads the workspace's clients, `/workspaces/{wid}/clients`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from connectors.sources.api import paging
from connectors.sources.api.errors import ApiResponseError
from connectors.sources.api.http import ApiClient
from connectors.sources.api.values import text

PER_PAGE = 200


def _rate(value: object) -> Decimal | None:
    """A set rate (Toggl sends null, and 0 for none on some levels)."""
    if value is None:
        return None
    d = Decimal(str(value))
    return d if d > 0 else None


def _user(record: dict) -> str | None:
    return text(record.get("user_id")) or text(record.get("uid"))


@dataclass
class WorkspaceRates:
    """One workspace's rates at every level, and the currencies they are in."""

    default_rate: Decimal | None = None
    default_currency: str | None = None
    member: dict[str, Decimal] = field(default_factory=dict)
    project: dict[str, Decimal] = field(default_factory=dict)
    project_currency: dict[str, str] = field(default_factory=dict)
    project_member: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    #: Every project the workspace listed (a project not among them has an unknown rate).
    projects: set[str] = field(default_factory=set)
    #: Each listed project's name and client id (for the Reports API's derived master data).
    project_name: dict[str, str] = field(default_factory=dict)
    project_client: dict[str, str] = field(default_factory=dict)

    def rate(self, project: str | None, user: str | None) -> Decimal | None:
        """The rate Toggl bills `user`'s time on `project` at (None: no level sets one, or
        the project was not listed, so its own rate is unknown)."""
        if project is not None and project not in self.projects:
            return self.project_member.get((project, user or ""))
        levels = (
            self.project_member.get((project or "", user or "")),
            self.project.get(project or ""),
            self.member.get(user or ""),
            self.default_rate,
        )
        return next((r for r in levels if r is not None), None)

    def currency(self, project: str | None) -> str | None:
        return self.project_currency.get(project or "") or self.default_currency


def _projects(client: ApiClient, path: str) -> list[dict]:
    """Every project, archived ones included (no `active` filter), paged until an empty page:
    a page shorter than asked is not taken as the last (the server may cap `per_page`)."""
    out: list[dict] = []
    for page_no in range(1, paging.MAX_PAGES + 1):
        rows = client.get(path, {"page": page_no, "per_page": PER_PAGE}).data
        if not isinstance(rows, list):
            raise ApiResponseError(f"{client.vendor} API GET {path}: not a list of projects")
        if not rows:
            return out
        out += rows
    raise ApiResponseError(f"{client.vendor} API GET {path}: more than {paging.MAX_PAGES} pages")


def read(client: ApiClient, workspace_id: str) -> WorkspaceRates:
    """Every rate of workspace `workspace_id` (four requests, projects paged)."""
    base = f"workspaces/{workspace_id}"
    ws = client.get(base).data or {}
    out = WorkspaceRates(
        default_rate=_rate(ws.get("default_hourly_rate")),
        default_currency=text(ws.get("default_currency")),
    )
    for m in paging.single(client, f"{base}/workspace_users", {}):
        r, user = _rate(m.get("rate")), _user(m)
        if r is not None and user:
            out.member[user] = r
    for p in _projects(client, f"{base}/projects"):
        pid = text(p.get("id"))
        if not pid:
            continue
        out.projects.add(pid)
        if text(p.get("name")):
            out.project_name[pid] = str(p["name"])
        if cid := text(p.get("client_id")) or text(p.get("cid")):
            out.project_client[pid] = cid
        r = _rate(p.get("rate"))
        if r is not None:
            out.project[pid] = r
        if text(p.get("currency")):
            out.project_currency[pid] = str(p["currency"])
    for pu in paging.single(client, f"{base}/project_users", {}):
        r, user, pid = _rate(pu.get("rate")), _user(pu), text(pu.get("project_id"))
        if r is not None and user and pid:
            out.project_member[(pid, user)] = r
    return out


def client_names(client: ApiClient, workspace_id: str) -> dict[str, str]:
    """Every client's name by id (`GET /workspaces/{wid}/clients`, one answer; `status=both`
    asks for archived clients too, as the v9 clients page describes the parameter)."""
    rows = paging.single(client, f"workspaces/{workspace_id}/clients", {"status": "both"})
    return {cid: str(c["name"]) for c in rows if (cid := text(c.get("id"))) and c.get("name")}
