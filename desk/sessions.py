"""Signed, expiring session cookies (HMAC-SHA256 over a small JSON payload).

Starlette's SessionMiddleware needs itsdangerous, which stagepost does not install; the
standard library's hmac does the same job for one cookie. The payload holds the user name,
role, the CSRF token and the expiry; a cookie whose signature or expiry fails is no session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

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


def _sign(key: bytes, body: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


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
    body = base64.urlsafe_b64encode(
        json.dumps(
            {"u": session.username, "r": session.role, "c": session.csrf, "e": session.expires},
            separators=(",", ":"),
        ).encode()
    )
    return f"{body.decode()}.{_sign(key, body)}", session


def read(key: bytes, cookie: str | None, now: float | None = None) -> Session | None:
    """The session a cookie carries, if it is ours, intact and not expired."""
    if not cookie or cookie.count(".") != 1:
        return None
    body, signature = cookie.split(".")
    if not hmac.compare_digest(_sign(key, body.encode()), signature):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(body.encode()))
        session = Session(str(data["u"]), str(data["r"]), str(data["c"]), int(data["e"]))
    except (ValueError, KeyError, TypeError):
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
