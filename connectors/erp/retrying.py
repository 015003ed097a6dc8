"""Retrying an ERP call while the ERP is unavailable, through tenacity.

The posting window's hand-written loop (`posting.window._retrying`) does the same:
`attempts` in all, delays `base_delay`, doubling, capped at `max_delay`, only for
`ErpUnavailable`, the last one re-raised. It is meant to become
`retry_unavailable(policy.attempts, policy.base_delay, policy.max_delay, sleep)` once the
posting package has moved (that module is not edited here meanwhile).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import tenacity

from connectors.erp.base import ErpUnavailable

T = TypeVar("T")


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
            reraise=True,
        )(fn)

    return call
