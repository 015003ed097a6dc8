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
    rows_of = {k: slots[kind_idx == BAD_KINDS.index(k)] for k in counts}
    as_of = m.as_of
    out = BadRows(rows=np.zeros(0, np.int64), kinds=np.zeros(0, np.int64))

    def rows(kind: str) -> np.ndarray:
        return rows_of.get(kind, np.zeros(0, np.int64))

    def unapprove(r: np.ndarray, status: int) -> None:
        e.status[r] = status
        e.appr_day[r] = -1
        e.appr_sec[r] = -1

    def move(r: np.ndarray, proj: np.ndarray, billable_task: bool) -> None:
        e.proj[r] = proj
        e.code[r] = pick_code(m, rng, proj, np.full(len(r), billable_task))
        e.desc[r] = description_index(e.code[r], rng.integers(0, _N_TOPICS, len(r)))
        e.billable[r] = billable_task
        e.cur[r] = m.proj_ent[proj]

    r = rows("negative_hours")
    e.hq[r] = -e.hq[r]
    e.hq[rows("zero_hours")] = 0
    r = rows("absurd_hours")
    e.hq[r] = rng.integers(100, 193, len(r))  # 25..48 h, not approved: no 24 h double count
    unapprove(r, cat.SUBMITTED)

    r = rows("over_24_per_day")
    if len(r):
        sizes = _group_sizes(len(r))
        group = np.repeat(np.arange(len(sizes)), sizes)
        leaders = r[np.concatenate([[0], np.cumsum(sizes)[:-1]])]
        days = np.arange(m.win_lo, m.win_hi + 1)
        sundays = days[weekday(days) == 6]
        g_emp = e.emp[leaders]
        g_day = sundays[rng.integers(0, len(sundays), len(sizes))]
        emp = g_emp[group]
        e.emp[r] = emp
        e.tz[r] = m.emp_ent[emp]
        move(r, m.tm_anchor[m.emp_ent[emp]], True)
        e.day[r] = g_day[group]
        e.hq[r] = np.concatenate([_OVER24_GROUP_HOURS_Q[s] for s in sizes])
        e.status[r] = cat.APPROVED
        lag = rng.integers(1, 4, len(r))
        e.appr_day[r] = np.minimum(e.day[r] + lag, as_of)
        e.appr_sec[r] = rng.integers(8 * 3600, 20 * 3600, len(r))
        e.approver[r] = m.emp_manager[emp]
        e.upd_day[r] = e.appr_day[r]
        e.upd_sec[r] = e.appr_sec[r] + rng.integers(0, 1800, len(r))

    r = rows("closed_project")
    if len(r):
        ent = m.emp_ent[e.emp[r]]
        proj = np.empty(len(r), np.int64)
        for ent_i, pool in enumerate(m.closed_by_ent):
            sel = ent == ent_i
            proj[sel] = pool[rng.integers(0, len(pool), sel.sum())]
        move(r, proj, True)

    r = rows("task_not_in_project")
    if len(r):
        has = m.has_code[e.proj[r]][:, : cat.N_BILLABLE_TASKS]
        score = np.where(has, -1.0, rng.random(has.shape))
        e.code[r] = score.argmax(axis=1)

    r = rows("currency_mismatch")
    e.cur[r] = (e.cur[r] + rng.integers(1, len(cat.CURRENCIES), len(r))) % len(cat.CURRENCIES)

    r = rows("future_date")
    if len(r):
        e.day[r] = as_of + rng.integers(1, 15, len(r))
        end = np.where(m.proj_end[e.proj[r]] < 0, BIG_DAY, m.proj_end[e.proj[r]])
        ended = r[(end < e.day[r]) | (e.proj[r] >= m.n_proj)]
        move(ended, m.tm_anchor[m.emp_ent[e.emp[ended]]], True)
        unapprove(r, cat.DRAFT)  # time logged ahead, still a draft
        e.upd_day[r] = as_of
        e.upd_sec[r] = rng.integers(8 * 3600, 18 * 3600, len(r))

    r = rows("approved_before_work")
    e.status[r] = cat.APPROVED
    e.appr_day[r] = e.day[r] - rng.integers(1, 4, len(r))
    e.appr_sec[r] = rng.integers(8 * 3600, 20 * 3600, len(r))

    r = rows("billable_on_non_billable_task")
    if len(r):
        e.code[r] = pick_code(m, rng, e.proj[r], np.zeros(len(r), bool))
        e.billable[r] = True

    r = rows("duplicate_conflict")
    if len(r):
        e.put(r, e.take(targets))
        e.hq[r] = np.where(e.hq[r] < 40, e.hq[r] + 1, e.hq[r] - 1)
        topic = np.where(e.desc[r] >= 0, e.desc[r] % _N_TOPICS + 1, 0) % _N_TOPICS
        e.desc[r] = description_index(e.code[r], topic)
        unapprove(r, cat.SUBMITTED)  # a second, edited version sent again
        e.upd_day[r] = np.minimum(e.upd_day[r] + 1, as_of)
        e.upd_sec[r] = rng.integers(8 * 3600, 20 * 3600, len(r))

    e.proj[rows("unknown_project")] = m.n_proj + np.arange(len(rows("unknown_project")))
    e.eid[rows("missing_entry_id")] = -1

    # Every bad row but missing_rate carries a filled, plausible bill rate, so that
    # it breaks only its own rule.
    r = slots[kind_idx != BAD_KINDS.index("missing_rate")] if "missing_rate" in counts else slots
    known = e.proj[r] < m.n_proj
    proj = np.where(known, e.proj[r], 0)
    card = m.card_rate(proj, e.emp[r], e.day[r])
    std = m.standard_rate(e.emp[r])
    rate = np.where(known & (m.rate_style[proj] > 0), card, np.where(e.rate[r] > 0, e.rate[r], std))
    e.rate[r] = np.where(e.billable[r], rate, -1)
    e.rate_shown[r] = e.billable[r]

    r = rows("missing_rate")
    if len(r):
        move(r, m.ff_anchor[m.emp_ent[e.emp[r]]], True)  # fixed fee: no rate card at all
        e.rate[r] = -1
        e.rate_shown[r] = False

    r = rows("unknown_employee")
    out.extra_emp_ent = m.emp_ent[e.emp[r]]
    e.emp[r] = m.n_emp + np.arange(len(r))

    year = (EPOCH + timedelta(days=as_of)).year
    r = rows("bad_date")
    out.text["work_date"] = (r, _bad_dates(rng, len(r), year))
    r = rows("bad_hours")
    out.text["hours"] = (
        r,
        [_BAD_HOURS_TEXT[i] for i in rng.integers(0, len(_BAD_HOURS_TEXT), len(r))],
    )

    all_rows = np.concatenate([slots, targets])
    all_kinds = np.concatenate([kind_idx, np.full(n_dup, BAD_KINDS.index("duplicate_conflict"))])
    order = np.argsort(all_rows)
    out.rows = all_rows[order]
    out.kinds = all_kinds[order]
    return out
