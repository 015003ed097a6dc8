"""Form bodies of the desk's POSTs (application/x-www-form-urlencoded).

Starlette parses forms through python-multipart, which stagepost does not install; the desk's
forms are small url-encoded ones, which the standard library parses."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import Request

MAX_FORM_BYTES = 256 * 1024


class Form:
    """The fields of a form; a field given several times (checkboxes) keeps every value."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def get(self, name: str, default: str = "") -> str:
        for k, v in self._pairs:
            if k == name:
                return v
        return default

    def getlist(self, name: str) -> list[str]:
        return [v for k, v in self._pairs if k == name]


async def read_form(request: Request) -> Form:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", ""):
        raise HTTPException(415, "forms are url-encoded")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, "form too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, "form is not UTF-8") from None
    return Form(parse_qsl(text, keep_blank_values=True, max_num_fields=2000))
