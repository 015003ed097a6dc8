"""`retry_unavailable`: which errors are retried, the capped delays, the last error kept."""

from __future__ import annotations

import logging

import pytest

from connectors.erp.base import ErpError, ErpUnavailable
from connectors.erp.retrying import RetryPolicy, retry_unavailable


class Flaky:
    """Fails with `error` the first `failures` calls, then answers."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures, self.calls = failures, 0
        self.error = error or ErpUnavailable("ERP down")

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise type(self.error)(f"{self.error} #{self.calls}")
        return "ok"


def test_unavailable_is_retried_with_doubling_delays_up_to_the_cap() -> None:
    slept: list[float] = []
    call = retry_unavailable(4, 0.5, 8.0, sleep=slept.append)  # docs/posting.md's policy
    assert call(Flaky(3)) == "ok"
    assert slept == [0.5, 1.0, 2.0]
    slept.clear()
    assert retry_unavailable(5, 3.0, 5.0, sleep=slept.append)(Flaky(4)) == "ok"
    assert slept == [3.0, 5.0, 5.0, 5.0]  # 6 and 12 capped at 5


def test_a_lasting_outage_raises_the_last_unavailable_after_all_attempts() -> None:
    slept: list[float] = []
    flaky = Flaky(10)
    with pytest.raises(ErpUnavailable, match="#3"):
        retry_unavailable(3, 0.0, 8.0, sleep=slept.append)(flaky)
    assert flaky.calls == 3 and slept == [0.0, 0.0]


def test_other_errors_are_not_retried() -> None:
    flaky = Flaky(1, ErpError("refused"))
    with pytest.raises(ErpError, match="refused #1"):
        retry_unavailable(4, 0.0, 1.0, sleep=lambda s: None)(flaky)
    assert flaky.calls == 1


def test_at_least_one_attempt() -> None:
    with pytest.raises(ValueError):
        retry_unavailable(0, 0.5, 8.0)


def test_each_failed_attempt_is_logged_without_the_password(caplog) -> None:
    flaky = Flaky(2, ErpUnavailable("ERP interface database postgresql://fin:s3cret@db/erp: down"))
    with caplog.at_level(logging.WARNING, logger="connectors.erp.retrying"):
        assert RetryPolicy(attempts=3, base_delay=0.25).caller(lambda s: None)(flaky) == "ok"
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "ERP unavailable (attempt 1/3): ERP interface database postgresql://fin:***@db/erp: "
        "down #1; retrying in 0.25 s",
        "ERP unavailable (attempt 2/3): ERP interface database postgresql://fin:***@db/erp: "
        "down #2; retrying in 0.50 s",
    ]
    assert "s3cret" not in caplog.text
