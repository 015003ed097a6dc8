"""Clean time entries as numpy columns, consistent with the master data.

Each entry: an active employee works on one of the projects they are staffed
on, on a weekday (rarely a Saturday, never a Sunday: Sundays are kept free for
the over-24-hours bad rows) inside the project's open range, on one of its
tasks. Daily totals per employee are scaled down to about 12 hours, far from
24, so that only injected rows break the 24-hour rule.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from connectors.sample_gen import catalog as cat
from connectors.sample_gen.master import Master
from connectors.sample_gen.strings import weekday

# Quarter-hour counts and how often consultants book them.
_HOURS_Q = np.array([1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24, 28, 30, 32, 34, 36, 40])
_HOURS_P = np.array([2, 5, 3, 10, 6, 10, 4, 8, 12, 3, 6, 3, 6, 14, 3, 3, 2], float)
_DAY_CAP_Q = 48  # 12 hours
_N_TOPICS = len(cat.DESCRIPTION_TOPICS)


@dataclass
class Entries:
    """Time entries as parallel arrays; -1 marks a blank value."""

    eid: np.ndarray  # entry number, entry_id = TE + 9 digits
    emp: np.ndarray  # employee index (>= n_emp: not in the employee master)
    proj: np.ndarray  # project index (>= n_proj: not in the project master)
    code: np.ndarray  # task-code index into TASK_CODES
    day: np.ndarray  # work date
    hq: np.ndarray  # hours in quarters
    billable: np.ndarray
    rate: np.ndarray  # bill rate in whole units the entry resolves to (-1: none)
    rate_shown: np.ndarray  # whether bill_rate is filled on the entry
    status: np.ndarray
    appr_day: np.ndarray
    appr_sec: np.ndarray
    approver: np.ndarray
    desc: np.ndarray  # index into the description table
    upd_day: np.ndarray
    upd_sec: np.ndarray
    cur: np.ndarray  # currency index
    tz: np.ndarray  # time zone (entity) of the timestamps
    deleted: np.ndarray

    def __len__(self) -> int:
        return len(self.eid)

    def slice(self, lo: int, hi: int) -> Entries:
        """Rows lo..hi-1 as views (no copy)."""
        return Entries(**{f.name: getattr(self, f.name)[lo:hi] for f in fields(self)})

    def take(self, idx: np.ndarray) -> Entries:
        """A copy with the rows at `idx`."""
        return Entries(**{f.name: getattr(self, f.name)[idx].copy() for f in fields(self)})

    def put(self, idx: np.ndarray, other: Entries) -> None:
        """Overwrite rows `idx` with the rows of `other`."""
        for f in fields(self):
            getattr(self, f.name)[idx] = getattr(other, f.name)


def description_index(code: np.ndarray, topic: np.ndarray) -> np.ndarray:
    """Index into the description table (task name x topic)."""
    return code * _N_TOPICS + topic


def description_table() -> list[str]:
    """All description texts, in `description_index` order."""
    return [f"{name} – {topic}" for name in cat.TASK_NAMES for topic in cat.DESCRIPTION_TOPICS]


def pick_code(
    m: Master, rng: np.random.Generator, proj: np.ndarray, billable_task: np.ndarray
) -> np.ndarray:
    """A random billable (or non-billable) task code of each project."""
    table = np.concatenate([m.bill_codes, m.nb_codes], axis=1).reshape(-1)
    width = cat.N_BILLABLE_TASKS + cat.N_NB_TASKS
    n_b, n_nb = m.n_bill_codes[proj], m.n_nb_codes[proj]
    use_b = billable_task & (n_b > 0)
    slot = (rng.random(len(proj)) * np.where(use_b, n_b, n_nb)).astype(np.int64)
    return table[proj * width + np.where(use_b, slot, cat.N_BILLABLE_TASKS + slot)]


def _work_days(m: Master, rng: np.random.Generator, proj: np.ndarray) -> np.ndarray:
    """Window day offsets inside each project's range: weekdays, few Saturdays, no Sundays.

    Draws uniformly from a sorted pool of day offsets in which each weekday
    appears 20 times and each Saturday once; a project's range is a slice of
    that pool, so one gather per row does it.
    """
    offsets = np.arange(m.win_hi - m.win_lo + 1)
    wd = weekday(m.win_lo + offsets)
    pool = np.repeat(offsets, np.where(wd == 6, 0, np.where(wd == 5, 1, 20)))
    lo, hi = m.effective_range(np.arange(m.n_proj))
    first = np.searchsorted(pool, lo - m.win_lo, side="left")
    count = np.maximum(np.searchsorted(pool, hi - m.win_lo, side="right") - first, 1)
    pick = first[proj] + (rng.random(len(proj)) * count[proj]).astype(np.int64)
    return pool[np.minimum(pick, len(pool) - 1)]


def _cap_daily_hours(emp: np.ndarray, day: np.ndarray, hq: np.ndarray) -> np.ndarray:
    """Scale down employee-days above the cap (floor to quarters, at least one quarter).

    Rows must be sorted by (day, employee): each employee-day is a run.
    """
    if len(hq) == 0:
        return hq
    change = np.concatenate([[True], (emp[1:] != emp[:-1]) | (day[1:] != day[:-1])])
    start = np.flatnonzero(change)
    total = np.repeat(np.add.reduceat(hq, start), np.diff(np.append(start, len(hq))))
    scaled = np.maximum(1, hq * _DAY_CAP_Q // np.maximum(total, 1))
    return np.where(total > _DAY_CAP_Q, scaled, hq)


def _placement(m: Master, rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """Who works on which project on which day, sorted by (day, employee)."""
    active = np.flatnonzero(m.emp_nproj > 0)
    weight = rng.gamma(4.0, 0.25, len(active))
    counts = rng.multinomial(n, weight / weight.sum())
    emp = np.repeat(active.astype(np.int32), counts)  # sorted by employee
    nproj = m.emp_nproj[emp]
    u = rng.random(n, dtype=np.float32)
    extra_slot = 1 + (rng.random(n, dtype=np.float32) * np.maximum(nproj - 1, 1)).astype(np.int32)
    slot = np.where((u < 0.65) | (nproj == 1), 0, extra_slot)
    proj = m.emp_proj.reshape(-1)[emp * 3 + slot].astype(np.int32)
    off = _work_days(m, rng, proj).astype(np.uint8)
    # a stable (radix) sort by day keeps employees ascending within each day
    order = np.argsort(off, kind="stable")
    return emp[order], proj[order], off[order].astype(np.int32) + np.int32(m.win_lo)


def _day_aligned_chunks(day: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Row ranges of about `size` rows that never split a day (nor an employee-day)."""
    n = len(day)
    cuts = np.unique(np.searchsorted(day, day[np.arange(size, n, size)], side="left"))
    bounds = [0, *(int(c) for c in cuts if 0 < c < n), n]
    return [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]


def generate_entries(m: Master, rng: np.random.Generator, n: int) -> Entries:
    """`n` clean entries, ordered by work date and employee, numbered from 1.

    After placement, columns are filled chunk by chunk into preallocated
    arrays: temporaries stay small enough for the allocator to reuse, which
    matters on VMs where fresh pages are expensive.
    """
    emp, proj, day = _placement(m, rng, n)
    out = Entries(
        eid=np.arange(1, n + 1, dtype=np.int64),
        emp=emp,
        proj=proj,
        code=np.empty(n, np.int32),
        day=day,
        hq=np.empty(n, np.int32),
        billable=np.empty(n, bool),
        rate=np.empty(n, np.int32),
        rate_shown=np.empty(n, bool),
        status=np.empty(n, np.int32),
        appr_day=np.empty(n, np.int32),
        appr_sec=np.empty(n, np.int32),
        approver=m.emp_manager[emp].astype(np.int32),
        desc=np.empty(n, np.int32),
        upd_day=np.empty(n, np.int32),
        upd_sec=np.empty(n, np.int32),
        cur=m.proj_ent[proj].astype(np.int32),
        tz=m.emp_ent[emp].astype(np.int32),
        deleted=np.zeros(n, bool),
    )
    for lo, hi in _day_aligned_chunks(day, 1 << 20):
        _fill(m, rng, out.slice(lo, hi))
    return out


def _fill(m: Master, rng: np.random.Generator, c: Entries) -> None:
    """Task, hours, billing, approval and description of placed entries (in place)."""
    n, emp, proj, day = len(c), c.emp, c.proj, c.day
    nb_task = (rng.random(n) < 0.12) | (m.n_bill_codes[proj] == 0)
    c.code[:] = pick_code(m, rng, proj, ~nb_task)
    hq = _HOURS_Q[rng.choice(len(_HOURS_Q), n, p=_HOURS_P / _HOURS_P.sum())]
    c.hq[:] = _cap_daily_hours(emp, day, hq)

    billing = m.proj_billing[proj]
    billable = (c.code < cat.N_BILLABLE_TASKS) & (billing != cat.NON_BILLABLE)
    billable &= rng.random(n) >= 0.03  # written-off time on billable tasks
    tm = billing == cat.TM
    rate = np.where(tm, m.resolve_rate(proj, emp, day), m.standard_rate(emp))
    c.rate[:] = np.where(billable, rate, -1)
    c.billable[:] = billable
    c.rate_shown[:] = billable & (~tm | (rng.random(n) < 0.6))

    age = m.as_of - day
    u = rng.random(n)
    recent = age <= 14
    cum_old = np.cumsum([0.02, 0.03, 0.93])  # draft, submitted, approved; rest rejected
    cum_new = np.cumsum([0.22, 0.22, 0.50])
    c.status[:] = np.where(
        recent, np.searchsorted(cum_new, u, side="right"), np.searchsorted(cum_old, u, side="right")
    )
    approved = c.status == cat.APPROVED

    lag = np.minimum(rng.geometric(0.45, n), age)
    c.appr_day[:] = np.where(approved, day + lag, -1)
    c.appr_sec[:] = np.where(approved, rng.integers(8 * 3600, 20 * 3600, n), -1)
    touch_day = day + np.minimum(rng.integers(0, 3, n), age)
    c.upd_day[:] = np.where(approved, c.appr_day, touch_day)
    c.upd_sec[:] = np.where(
        approved, c.appr_sec + rng.integers(0, 1800, n), rng.integers(9 * 3600, 19 * 3600, n)
    )
    desc = description_index(c.code, rng.integers(0, _N_TOPICS, n))
    c.desc[:] = np.where(rng.random(n) < 0.04, -1, desc)
