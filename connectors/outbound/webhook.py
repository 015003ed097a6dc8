"""A delivery pushed to an HTTP endpoint: one POST per delivery, retried with backoff.

The body is the delivery's JSON Lines (`application/x-ndjson`); headers carry the
idempotency key (`Idempotency-Key`: feed, sequence and content hash, the same on every retry
and on a re-run of the same delivery, so a receiver accepts each change once), the feed, the
sequence number and the content hash. Connection errors, timeouts and 408/429/5xx answers
are retried (tenacity: capped exponential backoff); any other 4xx is refused at once. What
still fails goes to the dead-letter table (`staging_models.outbound`), replayable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import tenacity

from connectors.erp.retrying import masked

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class WebhookFailed(Exception):
    """The endpoint did not accept the push (after retries, or refused it outright)."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class _Retry(Exception):
    """An answer worth retrying."""


def idempotency_key(feed: str, sequence: int, content_hash: str) -> str:
    return f"stagepost:{feed}:{sequence}:{content_hash}"


@dataclass
class Webhook:
    """An endpoint; `attempts` in all, delays `base_delay` doubling up to `max_delay`."""

    url: str
    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    timeout: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def describe(self) -> str:
        return masked(self.url)

    def push(self, body: bytes, *, feed: str, sequence: int, content_hash: str) -> int:
        """POST the body; returns the attempts it took. Raises `WebhookFailed`."""
        headers = {
            "Content-Type": "application/x-ndjson",
            "Idempotency-Key": idempotency_key(feed, sequence, content_hash),
            "X-Stagepost-Feed": feed,
            "X-Stagepost-Sequence": str(sequence),
            "X-Stagepost-Content-SHA256": content_hash,
        }
        attempts = 0
        with httpx.Client(timeout=self.timeout) as client:

            def once() -> None:
                nonlocal attempts
                attempts += 1
                try:
                    r = client.post(self.url, content=body, headers=headers)
                except httpx.TransportError as e:
                    raise _Retry(f"{type(e).__name__}: {e}") from e
                if r.status_code in _RETRYABLE_STATUS:
                    raise _Retry(f"HTTP {r.status_code} {r.text[:200]}")
                if not r.is_success:
                    raise WebhookFailed(
                        f"{self.describe()} refused delivery {feed} #{sequence}: "
                        f"HTTP {r.status_code} {r.text[:200]}",
                        attempts,
                    )

            def warn(state: tenacity.RetryCallState) -> None:
                error = state.outcome.exception() if state.outcome else None
                log.warning(
                    "webhook %s: delivery %s #%d attempt %d failed (%s); retrying",
                    self.describe(),
                    feed,
                    sequence,
                    state.attempt_number,
                    masked(str(error)),
                )

            try:
                tenacity.Retrying(
                    retry=tenacity.retry_if_exception_type(_Retry),
                    stop=tenacity.stop_after_attempt(self.attempts),
                    wait=tenacity.wait_exponential(multiplier=self.base_delay, max=self.max_delay),
                    sleep=self.sleep,
                    before_sleep=warn,
                    reraise=True,
                )(once)
            except _Retry as e:
                raise WebhookFailed(
                    f"{self.describe()} did not accept delivery {feed} #{sequence} after "
                    f"{attempts} attempts: {masked(str(e))}",
                    attempts,
                ) from None
        return attempts
