"""Faults the real ERP interface database cannot produce on demand, for tests only.

`FaultySqlInterfaceTarget` is the real `SqlInterfaceTarget` with a `FaultInjection`
consulted around its lookups and posts: production code carries no test hooks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from connectors.erp.base import ErpUnavailable, PostResult
from connectors.erp.sql_interface import SqlInterfaceTarget


@dataclass
class FaultInjection:
    """What to break. `calls` counts `existing_external_ids`, `post_time_lines` and
    `post_invoices`; `posts` counts the two posting methods only."""

    unavailable: bool = False  # every call raises ErpUnavailable
    periods_unavailable: bool = False  # `open_periods` (asked while planning) raises it
    fail_after_n_calls: int | None = None  # calls after the first n raise ErpUnavailable
    lose_response_on_posts: set[int] = field(default_factory=set)  # commit, then raise
    after_commit: Callable[[int], None] | None = None  # called with the post number
    unanswered_lines: int = 0  # a time-line post books all, but its answer omits this many
    calls: int = 0
    posts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def before(self, posting: bool = False) -> int:
        with self._lock:
            self.calls += 1
            calls = self.calls
            if posting:
                self.posts += 1
            post_no = self.posts
        if self.unavailable or (
            self.fail_after_n_calls is not None and calls > self.fail_after_n_calls
        ):
            raise ErpUnavailable("ERP interface database unavailable (injected fault)")
        return post_no

    def after_post(self, post_no: int) -> None:
        if self.after_commit:
            self.after_commit(post_no)
        if post_no in self.lose_response_on_posts:
            raise ErpUnavailable("ERP response lost after commit (injected fault)")


class FaultySqlInterfaceTarget(SqlInterfaceTarget):
    """The SQL interface target with `faults` injected before each call and after each
    committed post (an empty post commits nothing, so it has no "after")."""

    def __init__(self, url: str, *, faults: FaultInjection | None = None) -> None:
        super().__init__(url)
        self.faults = faults or FaultInjection()

    def open_periods(self, legal_entities, date_from, date_to) -> pd.DataFrame:
        if self.faults.periods_unavailable:
            raise ErpUnavailable("ERP interface database unavailable (injected fault)")
        return super().open_periods(legal_entities, date_from, date_to)

    def existing_external_ids(self, external_ids: Sequence[str]) -> set[str]:
        self.faults.before()
        return super().existing_external_ids(external_ids)

    def post_time_lines(self, lines: pd.DataFrame) -> PostResult:
        post_no = self.faults.before(posting=True)
        result = super().post_time_lines(lines)
        if not lines.empty:
            self.faults.after_post(post_no)
        if self.faults.unanswered_lines:
            result.accepted = result.accepted[: -self.faults.unanswered_lines]
        return result

    def post_invoices(self, invoices: pd.DataFrame, lines: pd.DataFrame) -> PostResult:
        post_no = self.faults.before(posting=True)
        result = super().post_invoices(invoices, lines)
        if not invoices.empty:
            self.faults.after_post(post_no)
        return result

    def post_journals(self, journals: pd.DataFrame, lines: pd.DataFrame) -> PostResult:
        post_no = self.faults.before(posting=True)
        result = super().post_journals(journals, lines)
        if not journals.empty:
            self.faults.after_post(post_no)
        return result
