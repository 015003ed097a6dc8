"""Who is asking: the signed session cookie, or a trusted reverse proxy's header.

Nothing of the desk answers without a signed-in user (the sign-in page and the stylesheet
aside); acting needs the operations or admin role, and every POST its session's CSRF token
(`desk/csrf.py`). With `STAGEPOST_DESK_PROXY_USER_HEADER` set, the proxy's header names the
user, who must exist (and be active) in `desk_users`, which gives the role; a session cookie is
then issued for the CSRF token only.
"""

from __future__ import annotations

import dataclasses

from starlette.requests import Request

from config.settings import current
from desk import sessions
from desk.roles import can_act
from desk.users import User, find_user


class NotSignedIn(Exception):
    """No valid session: pages redirect to the sign-in form, POSTs and downloads get 401."""


class Forbidden(Exception):
    """Signed in, but the role may not do this (403)."""


def session_of(request: Request) -> sessions.Session | None:
    return sessions.read(request.app.state.secret, request.cookies.get(sessions.COOKIE))


def current_user(request: Request) -> sessions.Session:
    """The session of the signed-in user, or NotSignedIn. Behind the proxy, the header wins: a
    cookie of another user (or none) is replaced by a fresh session (see `app.py`)."""
    header = current().desk_proxy_user_header
    session = session_of(request)
    if header:
        name = request.headers.get(header, "").strip()
        if not name:
            raise NotSignedIn()
        if session is not None and session.username == name:
            return session
        found = find_user(request.app.state.db, name)
        if found is None:
            raise Forbidden(f"{name} is not a desk user")
        user: User = found[0]
        _, fresh = sessions.issue(
            request.app.state.secret, user.username, user.role.value, current().desk_session_minutes
        )
        request.state.reissue = True
        return fresh
    if session is None:
        raise NotSignedIn()
    # A user disabled (or given another role) since signing in: effective at once, not at expiry.
    found = find_user(request.app.state.db, session.username)
    if found is None:
        raise NotSignedIn()
    if found[0].role.value != session.role:
        session = dataclasses.replace(session, role=found[0].role.value)
    return session


def require_actor(session: sessions.Session) -> None:
    if not can_act(session.role):
        raise Forbidden(f"{session.username} ({session.role}) may read, not act")
