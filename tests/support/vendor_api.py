"""Local stand-ins for the vendor APIs: an `http.server` on a loopback port that answers like
the vendor's documentation, from JSON fixtures under `tests/data/vendor_api/<vendor>/` (the
records as the vendor's docs show them), kept as state the test can change (edit an entry,
delete one) so that a later pull sees what the vendor would send.

Each fake checks the token the way the vendor does (401 otherwise), filters by the vendor's
change parameter, and pages the vendor's way with a small page size so that every test pages.
Faults a test asks for: `fail(status, headers, times)` answers the next requests with that
status (429 with `Retry-After`, 401, 503); `stall(path, page)` holds that page's answer until
`release()` (a pull killed while waiting, the SIGKILL test).
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

DATA = Path(__file__).resolve().parent.parent / "data" / "vendor_api"


def fixture(vendor: str, name: str) -> Any:
    """A fixture's JSON, numbers as `Decimal` (as the vendor sent them, never floats)."""
    return json.loads((DATA / vendor / name).read_text(encoding="utf-8"), parse_float=Decimal)


def _dumps(value: Any) -> bytes:
    """JSON with each `Decimal` written as the number it is (never through a float)."""

    def mark(o: Any) -> str:
        if isinstance(o, Decimal):
            return f"@@{o}@@"
        raise TypeError(type(o).__name__)

    return json.dumps(value, default=mark).replace('"@@', "").replace('@@"', "").encode()


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    #: The JSON body of a POST (Toggl's Reports API), else None.
    body: Any = None


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def _instant(text: str) -> datetime:
    t = text.replace("Z", "+00:00")
    if len(t) > 5 and t[-5] in "+-" and ":" not in t[-5:]:
        t = t[:-2] + ":" + t[-2:]
    dt = datetime.fromisoformat(t)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class FakeVendor:
    """A vendor API: `route(request)` answers; subclasses hold the records."""

    token_header = "Authorization"

    def __init__(self, token: str, page_size: int = 2) -> None:
        self.token = token
        self.page_size = page_size
        self.requests: list[Request] = []
        self._faults: list[Reply] = []
        self._stall: tuple[str, int] | None = None
        self.stalled = threading.Event()
        self._release = threading.Event()
        self.url = ""
        self.lock = threading.Lock()

    # -- faults -------------------------------------------------------------------------------
    def fail(self, status: int, headers: dict[str, str] | None = None, times: int = 1) -> None:
        self._faults += [Reply(status, {"message": "fault"}, headers or {})] * times

    def stall(self, path: str, page: int) -> None:
        self._stall = (path, page)

    def release(self) -> None:
        self._stall = None
        self._release.set()

    # -- serving ------------------------------------------------------------------------------
    def authorized(self, req: Request) -> bool:
        raise NotImplementedError

    def route(self, req: Request) -> Reply:
        raise NotImplementedError

    def answer(self, req: Request) -> Reply:
        with self.lock:
            self.requests.append(req)
            fault = self._faults.pop(0) if self._faults else None
        if fault:
            return fault
        if not self.authorized(req):
            return Reply(401, {"error": "invalid_token"})
        stall = self._stall
        if stall and req.path.endswith(stall[0]) and int(req.query.get("page", "1")) == stall[1]:
            self.stalled.set()
            self._release.wait(120)
        with self.lock:
            return self.route(req)


class _Handler(BaseHTTPRequestHandler):
    vendor: FakeVendor

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw, parse_float=Decimal) if raw else None
        headers = {k: v for k, v in self.headers.items()}
        req = Request(self.command, parts.path, query, headers, body)
        reply = self.server.vendor.answer(req)  # type: ignore[attr-defined]
        body = _dumps(reply.body) if reply.body is not None else b""
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client was killed
            pass

    do_GET = _serve
    do_POST = _serve


@contextmanager
def serve(vendor: FakeVendor) -> Iterator[FakeVendor]:
    """Run `vendor` on 127.0.0.1 at a free port (`vendor.url`) in a thread."""
    handler = type("Handler", (_Handler,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.vendor = vendor  # type: ignore[attr-defined]
    vendor.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield vendor
    finally:
        vendor.release()
        server.shutdown()
        server.server_close()


def _method(req: Request, method: str) -> Reply | None:
    """405 unless `req` uses `method`."""
    return None if req.method == method else Reply(405, "Method Not Allowed")


def _pages(records: list[dict], page: int, size: int) -> tuple[list[dict], int]:
    total = max(1, -(-len(records) // size))
    return records[(page - 1) * size : page * size], total


# -- Harvest API v2 ---------------------------------------------------------------------------


class FakeHarvest(FakeVendor):
    """`/v2/time_entries` (updated_since, from/to), users, clients, projects, task_assignments,
    invoices; pages as Harvest does (`links.next`, a cursor-like page link)."""

    def __init__(self, token: str, account_id: str = "123456", page_size: int = 2) -> None:
        super().__init__(token, page_size)
        self.account_id = account_id
        self.data = {
            name: fixture("harvest", f"{name}.json")[name]
            for name in (
                "time_entries",
                "users",
                "clients",
                "projects",
                "task_assignments",
                "invoices",
            )
        }

    def authorized(self, req: Request) -> bool:
        return (
            req.headers.get("Authorization") == f"Bearer {self.token}"
            and req.headers.get("Harvest-Account-Id") == self.account_id
        )

    def edit(self, entry_id: int, **changes: Any) -> None:
        with self.lock:
            for e in self.data["time_entries"]:
                if e["id"] == entry_id:
                    e.update(changes)

    def delete(self, entry_id: int) -> None:
        with self.lock:
            self.data["time_entries"] = [
                e for e in self.data["time_entries"] if e["id"] != entry_id
            ]

    def route(self, req: Request) -> Reply:
        if "User-Agent" not in req.headers:
            return Reply(400, {"message": "User-Agent header required"})
        name = req.path.removeprefix("/v2/")
        if name not in self.data:
            return Reply(404, {"error": "not_found"})
        rows = copy.deepcopy(self.data[name])
        q = req.query
        if "updated_since" in q:
            since = _instant(q["updated_since"])
            rows = [r for r in rows if _instant(r["updated_at"]) >= since]
        if "from" in q:
            rows = [r for r in rows if q["from"] <= r["spent_date"] <= q["to"]]
        rows.sort(key=lambda r: r["id"], reverse=True)  # Harvest: newest first
        page = int(q.get("page", "1"))
        chunk, total = _pages(rows, page, self.page_size)
        base = f"{self.url}/v2/{name}"
        rest = {k: v for k, v in q.items() if k not in ("page", "per_page")}
        query = urlencode({"page": page + 1, "per_page": self.page_size, **rest})
        nxt = f"{base}?{query}" if page < total else None
        return Reply(
            200,
            {
                name: chunk,
                "per_page": self.page_size,
                "total_pages": total,
                "total_entries": len(rows),
                "next_page": page + 1 if page < total else None,
                "previous_page": page - 1 if page > 1 else None,
                "page": page,
                "links": {
                    "first": f"{base}?page=1&per_page={self.page_size}",
                    "next": nxt,
                    "previous": None,
                    "last": f"{base}?page={total}&per_page={self.page_size}",
                },
            },
        )


# -- Toggl Track API v9 -----------------------------------------------------------------------


class FakeToggl(FakeVendor):
    """`/api/v9/me/time_entries?since=` (deleted entries included, `server_deleted_at`), the
    workspace's rates: `/workspaces/{wid}`, `workspace_users`, `projects` (page and
    per_page), `project_users`, and its `clients`; and the Reports API v3 detailed report,
    `POST /reports/api/v3/workspace/{wid}/search/time_entries` (rows of every member dated
    `start_date`..`end_date`, one entry per row, `page_size` capped at 2 and paged by the
    `X-Next-ID` / `X-Next-Row-Number` / `X-Next-Timestamp` headers fed back as `first_*`)."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.entries: list[dict] = fixture("toggl", "time_entries.json")
        self.workspace: dict = fixture("toggl", "workspace.json")
        self.workspace_data = {
            name: fixture("toggl", f"{name}.json")
            for name in ("workspace_users", "projects", "project_users", "clients")
        }
        #: The detailed report's rows (Reports API v3), one entry each.
        self.report: list[dict] = fixture("toggl", "report_time_entries.json")
        #: Whether the token's owner may see rates (Toggl: admins, by workspace setting).
        self.sees_rates = True

    def authorized(self, req: Request) -> bool:
        import base64

        expected = base64.b64encode(f"{self.token}:api_token".encode()).decode()
        return req.headers.get("Authorization") == f"Basic {expected}"

    def edit(self, entry_id: int, **changes: Any) -> None:
        with self.lock:
            for e in self.entries:
                if e["id"] == entry_id:
                    e.update(changes)

    def edit_report(self, entry_id: int, **changes: Any) -> None:
        """Change a report row's entry (`seconds`, `start`, `at`...) or, for row fields
        (`hourly_rate_in_cents`, `project_id`...), the row."""
        with self.lock:
            for row in self.report:
                for e in row["time_entries"]:
                    if e["id"] == entry_id:
                        for k, v in changes.items():
                            (e if k in e else row)[k] = v

    def delete_report(self, entry_id: int) -> None:
        with self.lock:
            self.report = [r for r in self.report if r["time_entries"][0]["id"] != entry_id]

    def _search(self, req: Request) -> Reply:
        body = req.body or {}
        lo, hi = body.get("start_date"), body.get("end_date")
        if not lo or not hi or hi <= lo:
            return Reply(400, "end_date should be greater than start_date")
        rows = [
            r for r in copy.deepcopy(self.report) if lo <= r["time_entries"][0]["start"][:10] <= hi
        ]
        rows.sort(key=lambda r: (r["time_entries"][0]["start"], r["time_entries"][0]["id"]))
        for n, r in enumerate(rows, 1):
            r["row_number"] = n
        start = int(body.get("first_row_number") or 1)
        size = min(int(body.get("page_size") or 50), self.page_size)
        chunk = rows[start - 1 : start - 1 + size]
        headers: dict[str, str] = {}
        if start - 1 + size < len(rows):
            nxt = rows[start - 1 + size]
            headers = {
                "X-Next-ID": str(nxt["time_entries"][0]["id"]),
                "X-Next-Row-Number": str(nxt["row_number"]),
                "X-Next-Timestamp": str(int(_instant(nxt["time_entries"][0]["start"]).timestamp())),
            }
        return Reply(200, chunk, headers)

    def route(self, req: Request) -> Reply:
        search = f"/reports/api/v3/workspace/{self.workspace['id']}/search/time_entries"
        if req.path == search:
            return _method(req, "POST") or self._search(req)
        ws = f"/api/v9/workspaces/{self.workspace['id']}"
        if req.path == ws:
            return Reply(200, copy.deepcopy(self.workspace))
        name = req.path.removeprefix(ws + "/")
        if req.path.startswith(ws) and not self.sees_rates:
            return Reply(403, "Forbidden: only admins may see billable rates")
        if req.path.startswith(ws + "/") and name in self.workspace_data:
            rows = copy.deepcopy(self.workspace_data[name])
            if name == "projects":
                size = int(req.query.get("per_page", "151"))
                page = int(req.query.get("page", "1"))
                rows = rows[(page - 1) * size : page * size]
            return Reply(200, rows)
        if req.path != "/api/v9/me/time_entries":
            return Reply(404, "Not Found")
        rows = copy.deepcopy(self.entries)
        if "since" in req.query:
            since = datetime.fromtimestamp(int(req.query["since"]), UTC)
            rows = [r for r in rows if _instant(r["at"]) >= since]
        return Reply(200, rows)


# -- Kimai ------------------------------------------------------------------------------------


class FakeKimai(FakeVendor):
    """`/api/timesheets` (modified_after, begin/end, page/size, `X-Total-Pages`)."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.entries: list[dict] = fixture("kimai", "timesheets.json")

    def authorized(self, req: Request) -> bool:
        return req.headers.get("Authorization") == f"Bearer {self.token}"

    def edit(self, entry_id: int, **changes: Any) -> None:
        with self.lock:
            for e in self.entries:
                if e["id"] == entry_id:
                    e.update(changes)

    def route(self, req: Request) -> Reply:
        if req.path != "/api/timesheets":
            return Reply(404, {"message": "Not found"})
        q = req.query
        rows = sorted(copy.deepcopy(self.entries), key=lambda r: r["id"])
        if "modified_after" in q:
            after = datetime.fromisoformat(q["modified_after"]).replace(tzinfo=UTC)
            rows = [r for r in rows if _instant(r["modifiedAt"]) >= after]
        if "begin" in q:
            rows = [r for r in rows if q["begin"][:10] <= r["begin"][:10] <= q["end"][:10]]
        size = min(int(q.get("size", "50")), self.page_size)
        page = int(q.get("page", "1"))
        chunk, total = _pages(rows, page, size)
        headers = {
            "X-Page": str(page),
            "X-Total-Count": str(len(rows)),
            "X-Total-Pages": str(total),
            "X-Per-Page": str(size),
        }
        return Reply(200, chunk, headers)


# -- Clockify ---------------------------------------------------------------------------------


class FakeClockify(FakeVendor):
    """`/api/v1/workspaces/{ws}/users` and `/user/{id}/time-entries` (start/end, page and
    page-size; a short page is the last)."""

    def __init__(self, token: str, workspace_id: str = "ws1") -> None:
        super().__init__(token)
        self.workspace_id = workspace_id
        self.users: list[dict] = fixture("clockify", "users.json")
        self.entries: list[dict] = fixture("clockify", "time_entries.json")

    def authorized(self, req: Request) -> bool:
        return req.headers.get("X-Api-Key") == self.token

    def delete(self, entry_id: str) -> None:
        with self.lock:
            self.entries = [e for e in self.entries if e["id"] != entry_id]

    def route(self, req: Request) -> Reply:
        prefix = f"/api/v1/workspaces/{self.workspace_id}/"
        if not req.path.startswith(prefix):
            return Reply(404, {"message": "workspace not found", "code": 404})
        rest = req.path.removeprefix(prefix)
        q = req.query
        if rest == "users":
            rows = copy.deepcopy(self.users)
        elif rest.startswith("user/") and rest.endswith("/time-entries"):
            uid = rest.split("/")[1]
            rows = [e for e in copy.deepcopy(self.entries) if e["userId"] == uid]
            if "start" in q:
                lo, hi = _instant(q["start"]), _instant(q["end"])
                rows = [r for r in rows if lo <= _instant(r["timeInterval"]["start"]) <= hi]
            rows.sort(key=lambda r: r["timeInterval"]["start"], reverse=True)
        else:
            return Reply(404, {"message": "not found", "code": 404})
        size = int(q.get("page-size", "50"))
        page = int(q.get("page", "1"))
        return Reply(200, rows[(page - 1) * size : page * size])
