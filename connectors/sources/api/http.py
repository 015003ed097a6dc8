"""One HTTP client for every vendor: httpx for the connection, tenacity for the retries.

Why these two: httpx (already stagepost's client for Tryton's JSON-RPC) gives one keep-alive
session with timeouts, and hands the body to `json.loads(parse_float=Decimal)`, so hours and
money never pass through a binary float. tenacity (already used for SFTP) gives the retry loop,
with a wait that honours the vendor's `Retry-After` and otherwise backs off exponentially with
jitter; writing that loop by hand is where retries usually go wrong (no cap, no jitter, retrying
a 401). Every request also waits for the vendor's documented rate (`rate_limit.Throttle`).

Never retried: 401/403 (`ApiAuthError`, naming the setting to fix) and other 4xx
(`ApiRequestError`). Retried: 429, 408, 5xx and dropped connections; a `Retry-After` longer
than `RetryPolicy.max_wait`, or still failing after `attempts`, ends the pull with
`ApiUnavailable` (retryable: the cursor has not moved, the next run pulls the window again).
The token goes into a header only: it is never part of a URL, a log line or a message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from connectors.sources.api.errors import (
    ApiAuthError,
    ApiRequestError,
    ApiResponseError,
    ApiUnavailable,
)
from connectors.sources.api.rate_limit import NO_LIMIT, RateLimit, Throttle

log = logging.getLogger("stagepost.api")


@dataclass(frozen=True)
class RetryPolicy:
    """How long one pull insists: `attempts` tries per request, exponential waits from `base`
    up to `cap` seconds, and at most `max_wait` seconds for one `Retry-After`."""

    attempts: int = 6
    base: float = 1.0
    cap: float = 60.0
    max_wait: float = 300.0


DEFAULT_RETRY = RetryPolicy()


@dataclass
class ApiResponse:
    """A successful answer: its JSON (decimals as `Decimal`) and its headers."""

    data: Any
    headers: Mapping[str, str] = field(default_factory=dict)


class _Again(Exception):
    """A response or failure worth retrying; `retry_after` in seconds if the vendor said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds: a number of seconds, or an HTTP date (RFC 9110)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class ApiClient:
    """A vendor's API at `base_url`, authenticated by `auth_headers` (or `auth`).

    `auth_settings` names the settings a 401/403 asks the operator to check, e.g.
    `STAGEPOST_HARVEST_TOKEN and STAGEPOST_HARVEST_ACCOUNT_ID`. `retry_after_headers` lists the
    headers that say how long to wait (Toggl's quota uses its own).
    """

    def __init__(
        self,
        vendor: str,
        base_url: str,
        *,
        auth_settings: str,
        auth_headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        rate_limit: RateLimit = NO_LIMIT,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float = 60.0,
        retry_statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504}),
        retry_after_headers: tuple[str, ...] = ("Retry-After",),
    ) -> None:
        self.vendor = vendor
        self.base_url = base_url.rstrip("/")
        self.auth_settings = auth_settings
        self.retry = retry
        self.retry_statuses = retry_statuses
        self.retry_after_headers = retry_after_headers
        self.throttle = Throttle(rate_limit)
        self.requests = 0  # sent, retries included (for the pull's metadata)
        self._client = httpx.Client(
            base_url=self.base_url + "/",
            headers={"Accept": "application/json", **(headers or {}), **(auth_headers or {})},
            auth=auth,
            timeout=timeout,
            follow_redirects=False,  # a redirect would carry the token elsewhere
        )

    # -- one request ------------------------------------------------------------------------

    def _once(self, method: str, path: str, params: Any, body: Any) -> ApiResponse:
        self.throttle.wait()
        self.requests += 1
        where = f"{self.vendor} API {method} {path}"
        try:
            r = self._client.request(method, path.lstrip("/"), params=params, json=body)
        except httpx.TransportError as e:  # refused, reset, timed out: worth another try
            raise _Again(f"{where}: {type(e).__name__}: {e}") from None
        if r.status_code in (401, 403):
            raise ApiAuthError(
                f"{where} answered {r.status_code} {r.reason_phrase}: the token is wrong, "
                f"expired or lacks the right to read this; check {self.auth_settings}"
            )
        if r.status_code in self.retry_statuses or (
            r.status_code >= 400 and self._retry_after(r) is not None and r.status_code != 404
        ):
            wait = self._retry_after(r)
            if wait is not None and wait > self.retry.max_wait:
                raise ApiUnavailable(
                    f"{where} answered {r.status_code} and asks to wait {wait:.0f} s, longer "
                    f"than a pull waits ({self.retry.max_wait:.0f} s); the next run pulls the "
                    "same window again"
                )
            raise _Again(f"{where} answered {r.status_code} {r.reason_phrase}", wait)
        if 300 <= r.status_code < 400:
            raise ApiRequestError(
                f"{where} answered {r.status_code}, redirecting to "
                f"{r.headers.get('Location', '(no location)')}: not followed (the token would "
                "go with it); check the API's URL setting"
            )
        if r.status_code >= 400:
            raise ApiRequestError(
                f"{where} answered {r.status_code} {r.reason_phrase}: {_snippet(r.text)}"
            )
        if r.status_code == 204 or not r.content:
            return ApiResponse(None, r.headers)
        try:
            data = json.loads(r.content, parse_float=Decimal)
        except ValueError:
            raise ApiResponseError(
                f"{where} answered {r.status_code} with a body that is not JSON: {_snippet(r.text)}"
            ) from None
        return ApiResponse(data, r.headers)

    def _retry_after(self, r: httpx.Response) -> float | None:
        for name in self.retry_after_headers:
            seconds = retry_after_seconds(r.headers.get(name))
            if seconds is not None:
                return seconds
        return None

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        told = getattr(exc, "retry_after", None)
        if told is not None:
            return float(told)
        return wait_exponential_jitter(
            multiplier=self.retry.base, max=self.retry.cap, jitter=self.retry.base
        )(state)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        pause = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s; try %d of %d in %.1f s", exc, state.attempt_number + 1, self.retry.attempts, pause
        )

    def request(
        self, method: str, path: str, *, params: Any = None, body: Any = None
    ) -> ApiResponse:
        """One call, retried as the module says; raises the errors of `errors.py`."""
        retrying = Retrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Again),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(self._once, method, path, params, body)
        except _Again as e:
            raise ApiUnavailable(
                f"{e}; gave up after {self.retry.attempts} tries; the next run pulls the same "
                "window again"
            ) from None

    def get(self, path: str, params: Any = None) -> ApiResponse:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any, params: Any = None) -> ApiResponse:
        return self.request("POST", path, params=params, body=body)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
