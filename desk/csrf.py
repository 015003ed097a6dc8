"""CSRF protection: every POST carries its session's token (a hidden form field, or the
`X-CSRF-Token` header for scripts), compared in constant time. The cookie is SameSite=Lax
(another site's form posts do not carry it); the token is what makes a forged form fail even
where a browser would send the cookie."""

from __future__ import annotations

import hmac

from desk.forms import Form
from desk.sessions import Session

FIELD = "csrf_token"
HEADER = "x-csrf-token"


class CsrfRefused(Exception):
    """The POST lacks its session's token (403)."""


def check(session: Session, form: Form, headers) -> None:
    given = form.get(FIELD) or headers.get(HEADER, "")
    if not given or not hmac.compare_digest(given.encode(), session.csrf.encode()):
        raise CsrfRefused("the form's security token is missing or stale: reload the page")
