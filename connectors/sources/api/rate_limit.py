"""A client-side limit of requests per period, so a pull stays under the vendor's documented
rate (Harvest: 100 requests per 15 s) instead of learning it from 429 answers."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    """At most `requests` in any `per_seconds` window (0 requests: no limit)."""

    requests: int = 0
    per_seconds: float = 1.0

    def describe(self) -> str:
        return f"{self.requests} per {self.per_seconds:g} s" if self.requests else "none"


NO_LIMIT = RateLimit()


class Throttle:
    """Sliding-window limiter: `wait()` before each request sleeps until a slot is free."""

    def __init__(
        self,
        limit: RateLimit,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit = limit
        self._clock, self._sleep = clock, sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until a request may go; returns how long it slept (for tests and logs)."""
        if not self.limit.requests:
            return 0.0
        slept = 0.0
        with self._lock:
            while True:
                now = self._clock()
                while self._sent and now - self._sent[0] >= self.limit.per_seconds:
                    self._sent.popleft()
                if len(self._sent) < self.limit.requests:
                    self._sent.append(now)
                    return slept
                pause = self.limit.per_seconds - (now - self._sent[0])
                self._sleep(pause)
                slept += pause
