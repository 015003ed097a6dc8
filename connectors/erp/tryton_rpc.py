"""A small JSON-RPC client for trytond over one keep-alive httpx session.

Why not proteus: proteus runs `on_change` calls per record and is ~20x slower for
bulk work; stagepost only needs raw `create`/`search_read`/buttons. The client
knows Tryton's wire format (Decimal, date, timedelta as `__class__` objects, the
context as the last parameter), asks for gzip and detects it by magic bytes (the
server mislabels), and sorts failures into what the caller must do next:
`ErpUnavailable` (retry later), `TrytonUserError` (Tryton refused the data) or
`ErpError` (anything else). The password is sent to `common.db.login` only and never
appears in a log record or an exception message.

One `httpx.Client` per session keeps its TCP connection alive between calls: a
posting window makes hundreds of calls, and a new connection per call (urllib) cost a
handshake each. (`trytond`'s own command serves through Werkzeug's development server,
which closes every connection; a production WSGI server or proxy keeps it open.) Bodies
are read raw (no transparent decoding), so gzip is still told by its magic bytes,
whatever the server's headers say.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import itertools
import json
import logging
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import httpx
import numpy as np

from .base import ErpError, ErpUnavailable

logger = logging.getLogger(__name__)

#: HTTP statuses that mean "the server is there but cannot serve now".
_UNAVAILABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class TrytonUserError(ErpError):
    """Tryton refused the data of a call (validation, constraint, closed period...).

    `message` is Tryton's own text, safe to show to a user; the whole transaction
    of the call was rolled back.
    """

    def __init__(self, message: str, description: str = "") -> None:
        super().__init__(message if not description else f"{message} {description}")
        self.message = message
        self.description = description


class TrytonUserWarning(ErpError):
    """Tryton asks for a confirmation (`UserWarning`) before doing the call."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


def _encode(obj: Any) -> Any:
    """JSON for Tryton's typed values (order matters: datetime is a date subclass)."""
    if isinstance(obj, Decimal):
        return {"__class__": "Decimal", "decimal": str(obj)}
    if isinstance(obj, dt.datetime):
        return {
            "__class__": "datetime",
            "year": obj.year,
            "month": obj.month,
            "day": obj.day,
            "hour": obj.hour,
            "minute": obj.minute,
            "second": obj.second,
            "microsecond": obj.microsecond,
        }
    if isinstance(obj, dt.date):
        return {"__class__": "date", "year": obj.year, "month": obj.month, "day": obj.day}
    if isinstance(obj, dt.timedelta):
        return {"__class__": "timedelta", "seconds": obj.total_seconds()}
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"cannot send {type(obj).__name__} to Tryton")


def _decode(dct: dict[str, Any]) -> Any:
    kind = dct.get("__class__")
    if kind is None:
        return dct
    if kind == "Decimal":
        return Decimal(dct["decimal"])
    if kind == "date":
        return dt.date(dct["year"], dct["month"], dct["day"])
    if kind == "datetime":
        return dt.datetime(
            dct["year"],
            dct["month"],
            dct["day"],
            dct["hour"],
            dct["minute"],
            dct["second"],
            dct["microsecond"],
        )
    if kind == "timedelta":
        return dt.timedelta(seconds=dct["seconds"])
    if kind == "time":
        return dt.time(dct["hour"], dct["minute"], dct["second"], dct["microsecond"])
    if kind == "bytes":
        return base64.decodebytes(dct["base64"].encode())
    return dct


def dumps(obj: Any) -> bytes:
    """Serialise a request body the way trytond decodes it."""
    return json.dumps(obj, default=_encode, separators=(",", ":")).encode()


def loads(body: bytes) -> Any:
    """Parse a response body, gunzipping it if it starts with gzip's magic bytes."""
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    return json.loads(body, object_hook=_decode)


class TrytonRpc:
    """One authenticated JSON-RPC session with a trytond database."""

    def __init__(
        self,
        url: str,
        database: str,
        user: str,
        password: str,
        *,
        timeout: float = 60.0,
        language: str = "en",
    ) -> None:
        self.base_url = url.rstrip("/")
        self.database = database
        self.user = user
        self.__password = password
        self.timeout = timeout
        self.language = language
        self._authorization: str | None = None
        self._context: dict[str, Any] | None = None
        self._user_id: int | None = None
        self._ids = itertools.count(1)
        # Direct connections (trust_env=False): an ERP is reached inside the network, and a
        # stray HTTP(S)_PROXY in the environment must not route sessions through a proxy.
        self._client = httpx.Client(timeout=timeout, trust_env=False)

    def close(self) -> None:
        """Close the kept-alive connection (a later call opens a new one)."""
        self._client.close()
        self._client = httpx.Client(timeout=self.timeout, trust_env=False)

    def __enter__(self) -> TrytonRpc:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"TrytonRpc({self.base_url!r}, database={self.database!r}, user={self.user!r})"

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/{self.database}/rpc/"

    @property
    def context(self) -> dict[str, Any]:
        """The user's preferences, Tryton's context for every model call."""
        if self._context is None:
            self.login()
        assert self._context is not None
        return self._context

    @property
    def user_id(self) -> int:
        """The logged-in user's id (logs in if needed)."""
        if self._user_id is None:
            self.login()
        assert self._user_id is not None
        return self._user_id

    def login(self) -> None:
        """Open a session; the password goes into this one request only."""
        self._authorization = None
        result = self._post(
            "common.db.login",
            [self.user, {"password": self.__password}, self.language],
            retry_login=False,
        )
        if not isinstance(result, list) or len(result) < 2:
            raise ErpError(f"Tryton refused the login of user {self.user!r}")
        user_id, session = result[0], result[1]
        token = base64.b64encode(f"{self.user}:{user_id}:{session}".encode()).decode()
        self._authorization = f"Session {token}"
        self._user_id = int(user_id)
        self._context = self._post("model.res.user.get_preferences", [True, {}])

    def call(self, method: str, *params: Any, context: Mapping[str, Any] | None = None) -> Any:
        """Call `method` with the context appended as Tryton requires."""
        ctx = dict(self.context)
        if context:
            ctx.update(context)
        return self._post(method, [*params, ctx])

    def model(
        self, model: str, method: str, *params: Any, context: Mapping[str, Any] | None = None
    ) -> Any:
        """Shortcut for `model.<model>.<method>`."""
        return self.call(f"model.{model}.{method}", *params, context=context)

    def _post(self, method: str, params: list[Any], retry_login: bool = True) -> Any:
        if self._authorization is None and method != "common.db.login":
            self.login()
        started = time.perf_counter()
        try:
            body = self._send(method, params)
        except _SessionExpired:
            if not retry_login:
                raise ErpError(f"Tryton refused the session for {method}") from None
            logger.info("tryton session expired, logging in again")
            self.login()
            body = self._send(method, params)
        logger.debug("tryton %s took %.3f s", method, time.perf_counter() - started)
        try:
            response = loads(body)
        except (ValueError, OSError) as exc:
            raise ErpError(f"Tryton answered {method} with something that is not JSON") from exc
        if "error" in response and response["error"] is not None:
            raise _error_from_response(method, response["error"])
        return response.get("result")

    def _send(self, method: str, params: list[Any]) -> bytes:
        payload = dumps({"id": next(self._ids), "method": method, "params": params})
        headers = {
            "Content-Type": "application/json",
            "Accept-Encoding": "gzip",
        }
        if self._authorization:
            headers["Authorization"] = self._authorization
        try:
            with self._client.stream(
                "POST", self.endpoint, content=payload, headers=headers
            ) as answer:
                status = answer.status_code
                # Raw bytes: `loads` tells gzip by its magic bytes, whatever the headers say.
                body = b"".join(answer.iter_raw())
        except httpx.TimeoutException as exc:
            if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
                raise ErpUnavailable(
                    f"Tryton at {self.base_url} is unreachable for {method}: no connection "
                    f"within {self.timeout:g} s"
                ) from None
            raise ErpUnavailable(
                f"Tryton at {self.base_url} did not answer {method} within {self.timeout:g} s"
            ) from exc
        except httpx.ConnectError as exc:
            raise ErpUnavailable(
                f"Tryton at {self.base_url} is unreachable for {method}: {_reason(exc)}"
            ) from None
        except httpx.TransportError as exc:
            raise ErpUnavailable(
                f"Tryton at {self.base_url} dropped the connection during {method}: {_reason(exc)}"
            ) from None
        if 200 <= status < 300:
            return body
        if status in (401, 403) and method == "common.db.login":
            raise ErpError(f"Tryton refused the login of user {self.user!r} (HTTP {status})")
        if status == 401:
            raise _SessionExpired()
        if status in _UNAVAILABLE_STATUSES:
            raise ErpUnavailable(f"Tryton answered HTTP {status} to {method}")
        if status == 403:
            raise ErpError(f"Tryton refused access (HTTP 403) to {method}")
        raise ErpError(f"Tryton answered HTTP {status} to {method}")


class _SessionExpired(Exception):
    """HTTP 401 on a model call: log in again once."""


def _reason(exc: BaseException) -> str:
    """The OS-level cause of a transport failure (`ConnectionRefusedError (...)`), if any."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return type(exc).__name__
    return type(cause).__name__ + (f" ({cause.strerror})" if cause.strerror else "")


def _error_from_response(method: str, error: Any) -> ErpError:
    """Map the `error` member of a JSON-RPC answer to an exception."""
    if isinstance(error, list) and error and isinstance(error[0], str):
        kind, args = error[0], error[1] if len(error) > 1 else None
        if kind == "UserError" and isinstance(args, list) and args:
            return TrytonUserError(str(args[0]), str(args[1] or "") if len(args) > 1 else "")
        if kind == "UserWarning" and isinstance(args, list) and len(args) >= 2:
            return TrytonUserWarning(str(args[0]), str(args[1]))
        if kind == "ConcurrencyException":
            return ErpError(f"Tryton reported a concurrent change during {method}: {args}")
        if kind == "LoginException":
            return ErpError(f"Tryton asks for another login step during {method}")
        # A server-side exception: (str(exception), traceback).
        return ErpError(f"Tryton failed on {method}: {kind}")
    return ErpError(f"Tryton failed on {method}")
