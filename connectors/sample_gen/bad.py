"""Bad-row injection with ground truth.

A share of the clean entries is overwritten by rows that break exactly one
rule each (as far as that is possible: an unknown project cannot also be
checked for its entity). Kinds are dealt round-robin. Two kinds span several
rows: `over_24_per_day` rows come in groups of 3-5 on one employee-day (a
Sunday, which clean data never uses), and `duplicate_conflict` pairs a new
row with the clean row whose entry_id it copies; all rows involved are
reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

from connectors.sample_gen import catalog as cat
from connectors.sample_gen.entries import (
    Entries,
    description_index,
    pick_code,
)
from connectors.sample_gen.master import BIG_DAY, Master
from connectors.sample_gen.strings import EPOCH, weekday

BAD_KINDS: tuple[str, ...] = (
    "negative_hours",
    "zero_hours",
    "absurd_hours",
    "over_24_per_day",
    "unknown_project",
    "closed_project",
    "task_not_in_project",
    "currency_mismatch",
    "missing_rate",
    "future_date",
    "approved_before_work",
    "bad_date",
    "bad_hours",
    "unknown_employee",
    "billable_on_non_billable_task",
    "duplicate_conflict",
    "missing_entry_id",
)
_OVER24_GROUP_HOURS_Q = {3: [34, 33, 34], 4: [26] * 4, 5: [21] * 5}
_BAD_HOURS_TEXT = ("7,5", "n/a", "7.5h", "eight", "--", "1:30")
_N_TOPICS = len(cat.DESCRIPTION_TOPICS)


@dataclass
class BadRows:
    """Where the bad rows are and what they need at output time."""

    rows: np.ndarray  # row positions, sorted
    kinds: np.ndarray  # index into BAD_KINDS per row
    text: dict[str, tuple[np.ndarray, list[str]]] = field(default_factory=dict)
    extra_emp_ent: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def plan_counts(n_bad: int, kinds: list[str]) -> dict[str, int]:
    """Rows per kind, dealt round-robin; a chosen over-24 kind gets at least 3 rows."""
    k = len(kinds)
    counts = {kind: n_bad // k + (1 if i < n_bad % k else 0) for i, kind in enumerate(kinds)}
    if 0 < counts.get("over_24_per_day", 0) < 3:
        counts["over_24_per_day"] = 3
    return counts


def _group_sizes(count: int) -> list[int]:
    head = {0: [], 1: [4], 2: [5]}[count % 3]
    return head + [3] * ((count - sum(head)) // 3)


def _bad_dates(rng: np.random.Generator, n: int, year: int) -> list[str]:
    choices = [f"{year}-02-30", f"{year}-13-05", f"{year}-11-31", f"31.12.{year}", "not a date"]
    return [choices[i] for i in rng.integers(0, len(choices), n)]


class _Injector:
    """Per-kind mutations of entry rows `r` (positions into the entries)."""

    def __init__(self, m: Master, e: Entries, rng: np.random.Generator) -> None:
        self.m, self.e, self.rng = m, e, rng

    def unapprove(self, r: np.ndarray, status: int) -> None:
        self.e.status[r] = status
        self.e.appr_day[r] = -1
        self.e.appr_sec[r] = -1

    def move(self, r: np.ndarray, proj: np.ndarray, billable_task: bool) -> None:
        """Put rows on another project (same entity), on one of its tasks."""
        e, m = self.e, self.m
        e.proj[r] = proj
        e.code[r] = pick_code(m, self.rng, proj, np.full(len(r), billable_task))
        e.desc[r] = description_index(e.code[r], self.rng.integers(0, _N_TOPICS, len(r)))
        e.billable[r] = billable_task
        e.cur[r] = m.proj_ent[proj]

    def negative_hours(self, r: np.ndarray) -> None:
        self.e.hq[r] = -self.e.hq[r]

    def zero_hours(self, r: np.ndarray) -> None:
        self.e.hq[r] = 0

    def absurd_hours(self, r: np.ndarray) -> None:
        self.e.hq[r] = self.rng.integers(100, 193, len(r))  # 25..48 h
        self.unapprove(r, cat.SUBMITTED)  # not approved: no double count as over-24

    def over_24_per_day(self, r: np.ndarray) -> None:
        """Groups of 3-5 valid-looking approved rows on one Sunday of one employee."""
        e, m, rng = self.e, self.m, self.rng
        sizes = _group_sizes(len(r))
        group = np.repeat(np.arange(len(sizes)), sizes)
        leaders = r[np.concatenate([[0], np.cumsum(sizes)[:-1]])]
        days = np.arange(m.win_lo, m.win_hi + 1)
        sundays = days[weekday(days) == 6]
        emp = e.emp[leaders][group]
        e.emp[r] = emp
        e.tz[r] = m.emp_ent[emp]
        self.move(r, m.tm_anchor[m.emp_ent[emp]], True)
        e.day[r] = sundays[rng.integers(0, len(sundays), len(sizes))][group]
        e.hq[r] = np.concatenate([_OVER24_GROUP_HOURS_Q[s] for s in sizes])
        e.status[r] = cat.APPROVED
        e.appr_day[r] = np.minimum(e.day[r] + rng.integers(1, 4, len(r)), m.as_of)
        e.appr_sec[r] = rng.integers(8 * 3600, 20 * 3600, len(r))
        e.approver[r] = m.emp_manager[emp]
        e.upd_day[r] = e.appr_day[r]
        e.upd_sec[r] = e.appr_sec[r] + rng.integers(0, 1800, len(r))

    def closed_project(self, r: np.ndarray) -> None:
        ent = self.m.emp_ent[self.e.emp[r]]
        proj = np.empty(len(r), np.int64)
        for ent_i, pool in enumerate(self.m.closed_by_ent):
            sel = ent == ent_i
            proj[sel] = pool[self.rng.integers(0, len(pool), sel.sum())]
        self.move(r, proj, True)

    def task_not_in_project(self, r: np.ndarray) -> None:
        """A billable task code that exists elsewhere but not on this project."""
        has = self.m.has_code[self.e.proj[r]][:, : cat.N_BILLABLE_TASKS]
        score = np.where(has, -1.0, self.rng.random(has.shape))
        self.e.code[r] = score.argmax(axis=1)

    def currency_mismatch(self, r: np.ndarray) -> None:
        n_cur = len(cat.CURRENCIES)
        self.e.cur[r] = (self.e.cur[r] + self.rng.integers(1, n_cur, len(r))) % n_cur

    def future_date(self, r: np.ndarray) -> None:
        """Time logged ahead, still a draft; on a project still open then."""
        e, m = self.e, self.m
        e.day[r] = m.as_of + self.rng.integers(1, 15, len(r))
        end = np.where(m.proj_end[e.proj[r]] < 0, BIG_DAY, m.proj_end[e.proj[r]])
        ended = r[end < e.day[r]]
        self.move(ended, m.tm_anchor[m.emp_ent[e.emp[ended]]], True)
        self.unapprove(r, cat.DRAFT)
        e.upd_day[r] = m.as_of
        e.upd_sec[r] = self.rng.integers(8 * 3600, 18 * 3600, len(r))

    def approved_before_work(self, r: np.ndarray) -> None:
        self.e.status[r] = cat.APPROVED
        self.e.appr_day[r] = self.e.day[r] - self.rng.integers(1, 4, len(r))
        self.e.appr_sec[r] = self.rng.integers(8 * 3600, 20 * 3600, len(r))

    def billable_on_non_billable_task(self, r: np.ndarray) -> None:
        self.e.code[r] = pick_code(self.m, self.rng, self.e.proj[r], np.zeros(len(r), bool))
        self.e.billable[r] = True

    def duplicate_conflict(self, r: np.ndarray, targets: np.ndarray) -> None:
        """A second, edited version of a clean row, sent again under its entry_id."""
        e = self.e
        e.put(r, e.take(targets))
        e.hq[r] = np.where(e.hq[r] < 40, e.hq[r] + 1, e.hq[r] - 1)
        topic = np.where(e.desc[r] >= 0, e.desc[r] % _N_TOPICS + 1, 0) % _N_TOPICS
        e.desc[r] = description_index(e.code[r], topic)
        self.unapprove(r, cat.SUBMITTED)
        e.upd_day[r] = np.minimum(e.upd_day[r] + 1, self.m.as_of)
        e.upd_sec[r] = self.rng.integers(8 * 3600, 20 * 3600, len(r))

    def unknown_project(self, r: np.ndarray) -> None:
        self.e.proj[r] = self.m.n_proj + np.arange(len(r))  # codes past the master's

    def missing_entry_id(self, r: np.ndarray) -> None:
        self.e.eid[r] = -1

    def fill_rates(self, r: np.ndarray) -> None:
        """A filled, plausible bill rate on billable rows, so they break only their own rule."""
        e, m = self.e, self.m
        known = e.proj[r] < m.n_proj
        proj = np.where(known, e.proj[r], 0)
        card = m.card_rate(proj, e.emp[r], e.day[r])
        kept = np.where(e.rate[r] > 0, e.rate[r], m.standard_rate(e.emp[r]))
        rate = np.where(known & (m.rate_style[proj] > 0), card, kept)
        e.rate[r] = np.where(e.billable[r], rate, -1)
        e.rate_shown[r] = e.billable[r]

    def missing_rate(self, r: np.ndarray) -> None:
        """Billable time on a fixed-fee project (which has no rate card), rate left blank."""
        self.move(r, self.m.ff_anchor[self.m.emp_ent[self.e.emp[r]]], True)
        self.e.rate[r] = -1
        self.e.rate_shown[r] = False

    def unknown_employee(self, r: np.ndarray) -> np.ndarray:
        """Ids past the master's; returns the entities their names should fit."""
        ent = self.m.emp_ent[self.e.emp[r]]
        self.e.emp[r] = self.m.n_emp + np.arange(len(r))
        return ent


_SIMPLE = (
    "negative_hours",
    "zero_hours",
    "absurd_hours",
    "over_24_per_day",
    "closed_project",
    "task_not_in_project",
    "currency_mismatch",
    "future_date",
    "approved_before_work",
    "billable_on_non_billable_task",
)


def inject_bad_rows(
    m: Master, e: Entries, rng: np.random.Generator, n_bad: int, kinds: list[str]
) -> BadRows:
    """Overwrite rows of `e` in place with bad rows; return the ground truth."""
    counts = plan_counts(n_bad, kinds)
    n_dup = counts.get("duplicate_conflict", 0)
    total = sum(counts.values())
    if total + n_dup > len(e):
        raise ValueError(
            f"{len(e)} entries are too few for {total} bad rows (+{n_dup} duplicate targets)"
        )
    picked = rng.choice(len(e), total + n_dup, replace=False)
    slots, targets = picked[:total], picked[total:]
    kind_idx = np.repeat([BAD_KINDS.index(k) for k in counts], list(counts.values()))
    empty = np.zeros(0, np.int64)
    rows = {k: slots[kind_idx == BAD_KINDS.index(k)] for k in counts}
    inj = _Injector(m, e, rng)

    for kind in _SIMPLE:
        if len(rows.get(kind, empty)):
            getattr(inj, kind)(rows[kind])
    if n_dup:
        inj.duplicate_conflict(rows["duplicate_conflict"], targets)
    inj.unknown_project(rows.get("unknown_project", empty))
    inj.missing_entry_id(rows.get("missing_entry_id", empty))
    inj.fill_rates(slots[kind_idx != BAD_KINDS.index("missing_rate")])
    inj.missing_rate(rows.get("missing_rate", empty))
    extra_emp_ent = inj.unknown_employee(rows.get("unknown_employee", empty))

    year = (EPOCH + timedelta(days=m.as_of)).year
    r_date, r_hours = rows.get("bad_date", empty), rows.get("bad_hours", empty)
    text = {
        "work_date": (r_date, _bad_dates(rng, len(r_date), year)),
        "hours": (
            r_hours,
            [_BAD_HOURS_TEXT[i] for i in rng.integers(0, len(_BAD_HOURS_TEXT), len(r_hours))],
        ),
    }
    all_rows = np.concatenate([slots, targets])
    all_kinds = np.concatenate([kind_idx, np.full(n_dup, BAD_KINDS.index("duplicate_conflict"))])
    order = np.argsort(all_rows)
    return BadRows(all_rows[order], all_kinds[order], text, extra_emp_ent)
