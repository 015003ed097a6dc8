"""Signed, expiring session cookies: a small JSON payload signed by itsdangerous.

The payload holds the user name, role, the CSRF token and the expiry (kept in the payload, so
tests can pass `now`); a cookie whose signature or expiry fails is no session.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeSerializer

from config.settings import current
from staging_models.db import data_dir

COOKIE = "stagepost_desk"


@dataclass(frozen=True)
class Session:
    username: str
    role: str
    csrf: str
    expires: int  # unix seconds


def secret_key() -> bytes:
    """`STAGEPOST_DESK_SESSION_SECRET`, else a random key kept (mode 0600) in the data folder, so
    sessions survive a restart of one desk process."""
    configured = current().desk_session_secret
    if configured is not None:
        value = configured.get_secret_value()
        if len(value) < 32:
            raise ValueError("STAGEPOST_DESK_SESSION_SECRET needs 32 or more characters")
        return value.encode()
    path = data_dir() / ".desk_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another desk process made it first: use theirs
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    for _ in range(50):  # the other process may still be writing it
        key = Path(path).read_text().strip()
        if key:
            return key.encode()
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty: delete it, or set STAGEPOST_DESK_SESSION_SECRET")


def _serializer(key: bytes) -> URLSafeSerializer:
    return URLSafeSerializer(key, salt="stagepost-desk-session")


def issue(
    key: bytes, username: str, role: str, minutes: int, now: float | None = None
) -> tuple[str, Session]:
    """A new session (fresh CSRF token) and its cookie value."""
    session = Session(
        username,
        role,
        secrets.token_urlsafe(32),
        int((time.time() if now is None else now) + minutes * 60),
    )
    payload = {"u": session.username, "r": session.role, "c": session.csrf, "e": session.expires}
    return _serializer(key).dumps(payload), session


def read(key: bytes, cookie: str | None, now: float | None = None) -> Session | None:
    """The session a cookie carries, if it is ours, intact and not expired."""
    if not cookie:
        return None
    try:
        data = _serializer(key).loads(cookie)
        session = Session(str(data["u"]), str(data["r"]), str(data["c"]), int(data["e"]))
    except (BadSignature, ValueError, KeyError, TypeError):
        return None
    if session.expires <= (time.time() if now is None else now):
        return None
    return session


def cookie_options() -> dict:
    """How the cookie is set: HttpOnly, SameSite=Lax (a link from Dagster's UI to a workbook
    carries it; another site's form posts do not, and lack the CSRF token anyway), Secure
    behind TLS."""
    s = current()
    return {
        "httponly": True,
        "samesite": "lax",
        "secure": s.desk_secure_cookies,
        "max_age": s.desk_session_minutes * 60,
        "path": "/",
    }
