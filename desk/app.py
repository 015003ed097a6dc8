"""The desk's web application (Starlette, server-rendered Jinja2 pages, no scripts from
elsewhere): routes, and how refusals answer.

Every route but the sign-in form and the stylesheet needs a signed-in user; every POST its
CSRF token; acting routes the operations or admin role. Pages that fail to sign in redirect
to the form; anything else unauthenticated (POSTs, downloads) gets 401.
"""

from __future__ import annotations

import json
import secrets
import urllib.parse
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from config.settings import current
from connectors.sources.canonical import DATASETS as DATASETS_ORDER
from desk import (
    actions,
    audit,
    auth,
    csrf,
    downloads,
    kpis,
    revalidate,
    sessions,
    windows,
    worklist,
)
from desk.forms import read_form
from desk.roles import can_act
from desk.users import authenticate
from staging_models import desk_items
from staging_models.db import StagingDB

HERE = Path(__file__).resolve().parent
LOGIN_COOKIE = "stagepost_desk_login"  # double-submit token of the sign-in form

templates = Jinja2Templates(directory=str(HERE / "templates"))


def _raw_pairs(raw: str | None) -> list[tuple[str, str]]:
    """The raw values of a quarantined row (JSON as read) as (column, value), blanks left out."""
    if not raw:
        return []
    try:
        values = json.loads(raw)
    except ValueError:
        return [("raw", raw)]
    return [(k, str(v)) for k, v in values.items() if v not in (None, "")]


def _figure(value: Any) -> str:
    """A window's setting or count as a reader wants it: `EUR 225.00, USD 10.00` for amounts
    per currency, `—` for none, lists joined."""
    if value is None or value == [] or value == {}:
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_figure(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_figure(v) for v in value)
    return str(value)


templates.env.filters["raw_pairs"] = _raw_pairs
templates.env.filters["figure"] = _figure


def _render(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> Response:
    session = getattr(request.state, "session", None)
    base = {
        "me": session,
        "can_act": bool(session and can_act(session.role)),
        "csrf_field": csrf.FIELD,
        "msg": request.query_params.get("msg", ""),
    }
    resp = templates.TemplateResponse(request, name, {**base, **ctx}, status_code=status)
    cookie = getattr(request.state, "new_cookie", None)
    if cookie:
        resp.set_cookie(sessions.COOKIE, cookie, **sessions.cookie_options())
    return resp


def _user(request: Request) -> sessions.Session:
    session = auth.current_user(request)
    request.state.session = session
    if getattr(request.state, "reissue", False):
        cookie, fresh = sessions.issue(
            request.app.state.secret,
            session.username,
            session.role,
            current().desk_session_minutes,
        )
        request.state.session = fresh
        request.state.new_cookie = cookie
        return fresh
    return session


async def _acting(request: Request):
    """A POST that changes something: signed in, CSRF token, a role that may act."""
    session = _user(request)
    form = await read_form(request)
    csrf.check(session, form, request.headers)
    auth.require_actor(session)
    return session, form


def _safe_path(path: str, default: str = "/") -> str:
    """A redirect target of this site only (no `//host`, no `/\\host`, no scheme)."""
    if (
        not path.startswith("/")
        or path.startswith("//")
        or "\\" in path
        or ":" in path.split("?")[0]
    ):
        return default
    return path


def _back(path: str, msg: str, **params: str) -> RedirectResponse:
    path = _safe_path(path)
    query = urllib.parse.urlencode({**{k: v for k, v in params.items() if v}, "msg": msg})
    return RedirectResponse(f"{path}{'&' if '?' in path else '?'}{query}", status_code=303)


def _db(request: Request) -> StagingDB:
    return request.app.state.db


# -- sign in / out ------------------------------------------------------------------------------


async def login_form(request: Request) -> Response:
    token = secrets.token_urlsafe(24)
    resp = templates.TemplateResponse(
        request,
        "login.html",
        {
            "me": None,
            "token": token,
            "next": request.query_params.get("next", "/"),
            "error": request.query_params.get("error", ""),
            "proxy": bool(current().desk_proxy_user_header),
        },
    )
    resp.set_cookie(
        LOGIN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        path="/login",
        secure=current().desk_secure_cookies,
        max_age=900,
    )
    return resp


async def login(request: Request) -> Response:
    form = await read_form(request)
    given, expected = form.get("login_token"), request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not secrets.compare_digest(given.encode(), expected.encode()):
        raise csrf.CsrfRefused("the sign-in form expired: reload it")
    user = authenticate(_db(request), form.get("username"), form.get("password"))
    nxt = _safe_path(form.get("next", "/"))
    if user is None:
        return RedirectResponse(
            "/login?"
            + urllib.parse.urlencode({"error": "Unknown user or wrong password.", "next": nxt}),
            status_code=303,
        )
    cookie, session = sessions.issue(
        request.app.state.secret, user.username, user.role.value, current().desk_session_minutes
    )
    with _db(request).begin() as conn:
        audit.record(conn, session, "login", now=datetime.now(UTC))
    resp = RedirectResponse(nxt, status_code=303)
    resp.set_cookie(sessions.COOKIE, cookie, **sessions.cookie_options())
    resp.delete_cookie(LOGIN_COOKIE, path="/login")
    return resp


async def logout(request: Request) -> Response:
    session = _user(request)
    csrf.check(session, await read_form(request), request.headers)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(sessions.COOKIE, path="/")
    return resp


# -- worklist -----------------------------------------------------------------------------------


async def worklist_page(request: Request) -> Response:
    _user(request)
    db = _db(request)
    desk_items.refresh(db)
    filters = worklist.Filters.from_query(request.query_params)
    pg = worklist.page(
        db, filters, after=request.query_params.get("after"), size=worklist.PAGE_SIZE
    )
    return _render(
        request,
        "worklist.html",
        {
            "page": pg,
            "f": filters,
            "owners": worklist.owners_known(db),
            "datasets": list(DATASETS_ORDER),
            "ages": list(worklist.AGE_BUCKETS),
            "statuses": worklist.STATUSES,
            "query": filters.as_query(),
            "after": request.query_params.get("after"),
            "first_url": "/?" + urllib.parse.urlencode(filters.as_query()),
            "next_url": "/?"
            + urllib.parse.urlencode({**filters.as_query(), "after": pg.next_cursor})
            if pg.next_cursor
            else None,
        },
    )


async def item_page(request: Request) -> Response:
    _user(request)
    ds, gk = request.query_params.get("ds", ""), request.query_params.get("gk", "")
    found = worklist.group(_db(request), ds, gk)
    if found is None:
        raise HTTPException(404, "no such exception")
    return _render(
        request, "item.html", {"it": found, "owners": worklist.owners_known(_db(request))}
    )


def _selection(form) -> actions.Selection:
    return actions.Selection.parse(form.getlist("item"), form.get("rule"), form.get("dataset"))


async def assign(request: Request) -> Response:
    session, form = await _acting(request)
    sel = _selection(form)
    due_text = form.get("due_date")
    try:
        due = date.fromisoformat(due_text) if due_text else None
    except ValueError:
        raise actions.ActionRefused(f"not a date: {due_text!r} (YYYY-MM-DD)") from None
    actions.assign(_db(request), session, list(sel.items), form.get("owner"), due)
    return _back(
        form.get("back", "/") or "/", f"{len(sel.items)} assigned to {form.get('owner').strip()}."
    )


async def add_comment(request: Request) -> Response:
    session, form = await _acting(request)
    ds, gk = form.get("ds"), form.get("gk")
    actions.comment(_db(request), session, ds, gk, form.get("body"))
    return _back("/item", "Comment added.", ds=ds, gk=gk)


async def ignore_preview(request: Request) -> Response:
    session, form = await _acting(request)
    sel = _selection(form)
    pv = actions.preview_ignore(_db(request), sel)
    return _render(request, "preview.html", {"pv": pv, "sel": sel, "reason": form.get("reason")})


async def ignore(request: Request) -> Response:
    session, form = await _acting(request)
    sel = _selection(form)
    audit_id, n = actions.ignore(_db(request), session, sel, form.get("reason"), form.get("token"))
    return _back("/audit", f"{n} rows ignored.", highlight=audit_id)


async def reopen(request: Request) -> Response:
    session, form = await _acting(request)
    undo = form.get("undo")
    sel = None if undo else _selection(form)
    _, n = actions.reopen(_db(request), session, undo=undo, sel=sel, reason=form.get("reason"))
    return _back("/audit" if undo else "/", f"{n} rows reopened.")


async def revalidate_now(request: Request) -> Response:
    session, form = await _acting(request)
    try:
        launched = revalidate.launch(session.username)
    except revalidate.LaunchFailed as e:
        raise actions.ActionRefused(f"Re-validation was not launched: {e}") from None
    with _db(request).begin() as conn:
        audit.record(
            conn,
            session,
            "revalidate",
            now=datetime.now(UTC),
            detail={"job": revalidate.JOB, "run_url": launched.url},
            run_id=launched.run_id,
        )
    return _back("/audit", f"Re-validation launched: run {launched.run_id}.")


async def audit_page(request: Request) -> Response:
    _user(request)
    offset = max(0, int(request.query_params.get("offset", "0") or 0))
    return _render(
        request,
        "audit.html",
        {
            "entries": audit.recent(_db(request), offset=offset),
            "offset": offset,
            "dagster": current().desk_dagster_url.rstrip("/"),
        },
    )


# -- windows and files --------------------------------------------------------------------------


async def windows_page(request: Request) -> Response:
    _user(request)
    offset = max(0, int(request.query_params.get("offset", "0") or 0))
    return _render(
        request,
        "windows.html",
        {
            "windows": windows.history(_db(request), offset),
            "offset": offset,
            "page": windows.PAGE,
            "dagster": current().desk_dagster_url.rstrip("/"),
        },
    )


async def window_page(request: Request) -> Response:
    _user(request)
    w = windows.window(_db(request), request.path_params["window_id"])
    if w is None:
        raise HTTPException(404, "no such posting window")
    return _render(
        request, "window.html", {"w": w, "dagster": current().desk_dagster_url.rstrip("/")}
    )


async def kpis_page(request: Request) -> Response:
    _user(request)
    return _render(request, "kpis.html", {"k": kpis.figures(_db(request))})


async def files_page(request: Request) -> Response:
    _user(request)
    return _render(
        request,
        "files.html",
        {
            "reports": downloads.listing("reports"),
            "previews": downloads.listing("previews"),
        },
    )


async def download(request: Request) -> Response:
    _user(request)
    path = downloads.resolve(request.path_params["folder"], request.path_params["name"])
    if path is None:
        raise HTTPException(404, "Not found")
    resp = FileResponse(path, filename=path.name, content_disposition_type="attachment")
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cache-Control"] = "no-store"
    return resp


# -- refusals -----------------------------------------------------------------------------------


def _wants_page(request: Request) -> bool:
    """A browser navigating (a page, or a download link followed from Dagster's UI), not a
    script or a form post."""
    if request.method not in ("GET", "HEAD"):
        return False
    return not request.url.path.startswith("/files/") or "text/html" in request.headers.get(
        "accept", ""
    )


async def not_signed_in(request: Request, exc: Exception) -> Response:
    if _wants_page(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(
            "/login?" + urllib.parse.urlencode({"next": target}), status_code=303
        )
    return Response("Sign in first.\n", status_code=401, media_type="text/plain")


async def refused(request: Request, exc: Exception) -> Response:
    status = 400 if isinstance(exc, actions.ActionRefused) else 403
    return _render(request, "error.html", {"message": str(exc) or "Not allowed."}, status=status)


async def database_error(request: Request, exc: Exception) -> Response:
    """The staging database did not answer (embedded DuckDB held by a Dagster run, PostgreSQL
    down): say so, and to retry, instead of a bare 500."""
    return _render(
        request,
        "error.html",
        {"message": "The staging database is busy or unreachable; try again in a moment."},
        status=503,
    )


async def http_error(request: Request, exc: HTTPException) -> Response:
    return Response(f"{exc.detail}\n", status_code=exc.status_code, media_type="text/plain")


class _SecurityHeaders:
    """Pages never framed, scripts and styles only from the desk itself."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        async def send_with(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (
                        b"content-security-policy",
                        b"default-src 'self'; frame-ancestors 'none'; form-action 'self'",
                    ),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with)


class _ReleaseDuckDB:
    """Embedded DuckDB allows one process to open its file: the desk closes its connections
    after every request, so Dagster's runs can write between two page views."""

    def __init__(self, app, db: StagingDB) -> None:
        self.app, self.db = app, db

    async def __call__(self, scope, receive, send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                self.db.engine.dispose()


def create_app(
    db: StagingDB, *, secret: bytes | None = None, release_duckdb: bool = False
) -> Starlette:
    """The desk on a staging database (schema ready). `release_duckdb`: close the embedded
    file after each request (the served desk; tests keep it open)."""
    db.init_schema()
    app = Starlette(
        routes=[
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/", worklist_page, methods=["GET"]),
            Route("/item", item_page, methods=["GET"]),
            Route("/assign", assign, methods=["POST"]),
            Route("/comment", add_comment, methods=["POST"]),
            Route("/ignore/preview", ignore_preview, methods=["POST"]),
            Route("/ignore", ignore, methods=["POST"]),
            Route("/reopen", reopen, methods=["POST"]),
            Route("/revalidate", revalidate_now, methods=["POST"]),
            Route("/audit", audit_page, methods=["GET"]),
            Route("/windows", windows_page, methods=["GET"]),
            Route("/windows/{window_id}", window_page, methods=["GET"]),
            Route("/kpis", kpis_page, methods=["GET"]),
            Route("/files", files_page, methods=["GET"]),
            Route("/files/{folder}/{name}", download, methods=["GET"]),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
        exception_handlers={
            auth.NotSignedIn: not_signed_in,
            auth.Forbidden: refused,
            csrf.CsrfRefused: refused,
            actions.ActionRefused: refused,
            HTTPException: http_error,
            sa.exc.OperationalError: database_error,
        },
    )
    app.state.db = db
    app.state.secret = secret or sessions.secret_key()
    app.add_middleware(_SecurityHeaders)
    if release_duckdb and db.is_duckdb:
        app.add_middleware(_ReleaseDuckDB, db=db)
    return app
