"""Retrying an ERP call while the ERP is unavailable, through tenacity.

`attempts` in all, delays `base_delay`, doubling, capped at `max_delay`, only for
`ErpUnavailable`; any other error passes at once; after the last attempt its error is
re-raised. Each failed attempt is logged (warning) with the ERP's message, any password in a
URL masked. The posting window takes its policy as `RetryPolicy`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from connectors.erp.base import ErpUnavailable

T = TypeVar("T")
logger = logging.getLogger(__name__)

_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")


def masked(message: str) -> str:
    """`message` with the password of any URL in it replaced by `***`."""
    return _URL_PASSWORD.sub(r"\1***@", message)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for `ErpUnavailable`: attempts in all, delays base, 2*base, ... capped."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0

    def caller(self, sleep: Callable[[float], None] = time.sleep) -> Callable[[Callable[[], T]], T]:
        """`retry_unavailable` with this policy."""
        return retry_unavailable(self.attempts, self.base_delay, self.max_delay, sleep)


def _log_attempt(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0.0
    logger.warning(
        "ERP unavailable (attempt %d/%s): %s; retrying in %.2f s",
        state.attempt_number,
        getattr(state.retry_object.stop, "max_attempt_number", "?"),
        masked(str(error)),
        delay,
    )


def retry_unavailable(
    attempts: int,
    base_delay: float,
    max_delay: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Callable[[Callable[[], T]], T]:
    """A `call(fn)` that runs `fn`, retrying `ErpUnavailable` with capped exponential backoff;
    any other error passes at once. `sleep` is injectable (tests, a stop signal)."""
    if attempts < 1:
        raise ValueError("attempts must be >= 1")

    def call(fn: Callable[[], T]) -> T:
        return tenacity.Retrying(  # a fresh state per call: safe to share `call` across threads
            retry=tenacity.retry_if_exception_type(ErpUnavailable),
            stop=tenacity.stop_after_attempt(attempts),
            wait=tenacity.wait_exponential(multiplier=base_delay, max=max_delay),
            sleep=sleep,
            before_sleep=_log_attempt,
            reraise=True,
        )(fn)

    return call
