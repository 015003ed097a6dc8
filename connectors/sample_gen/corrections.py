"""Later versions of approved entries: edits (hours, description, task) and deletions.

They model a delta export taken the day after the main one (`updated_at` on
as_of + 1): an approved entry was changed and re-approved, or deleted in the
PSA (same row, `deleted=true`). Hour changes are small (at most one hour) so a
corrected day never approaches 24 hours.
"""

from __future__ import annotations

import numpy as np

from connectors.sample_gen import catalog as cat
from connectors.sample_gen.entries import Entries, description_index
from connectors.sample_gen.master import Master

_N_TOPICS = len(cat.DESCRIPTION_TOPICS)


def generate_corrections(
    m: Master, e: Entries, rng: np.random.Generator, n_corr: int, candidates: np.ndarray
) -> Entries:
    """`n_corr` corrected versions of entries drawn from `candidates` (row positions)."""
    n_corr = min(n_corr, len(candidates))
    pick = np.sort(rng.choice(candidates, n_corr, replace=False))
    c = e.take(pick)
    n = len(c)
    u = rng.random(n)
    delete = u < 0.10
    if n >= 3 and not delete.any():
        delete[0] = True  # always a few deletions
    change = rng.choice(3, n, p=[0.40, 0.35, 0.25])  # hours, description, task

    hours = ~delete & (change == 0)
    step = rng.integers(1, 5, n)  # 0.25 .. 1.00 h
    step = np.where(rng.random(n) < 0.5, -step, step)
    up = c.hq + step
    c.hq = np.where(hours, np.where((up >= 1) & (up <= 40), up, c.hq - step), c.hq)

    # a task change moves to another task of the same kind in the same project
    billable_task = c.code < cat.N_BILLABLE_TASKS
    count = np.where(billable_task, m.n_bill_codes[c.proj], m.n_nb_codes[c.proj])
    task = ~delete & (change == 2) & (count >= 2)
    codes = np.where(billable_task[:, None], m.bill_codes[c.proj, :], np.pad(
        m.nb_codes[c.proj, :], ((0, 0), (0, cat.N_BILLABLE_TASKS - cat.N_NB_TASKS)),
        constant_values=-1))  # fmt: skip
    current = (codes == c.code[:, None]).argmax(axis=1)
    shift = 1 + (rng.random(n) * np.maximum(count - 1, 1)).astype(np.int64)
    new_code = codes[np.arange(n), (current + shift) % np.maximum(count, 1)]
    c.code = np.where(task, new_code, c.code)

    topic = np.where(c.desc >= 0, c.desc % _N_TOPICS, rng.integers(0, _N_TOPICS, n))
    text = ~delete & ((change == 1) | ((change == 2) & ~task))
    topic = np.where(text, (topic + rng.integers(1, _N_TOPICS, n)) % _N_TOPICS, topic)
    c.desc = np.where(text | task, description_index(c.code, topic), c.desc)

    c.upd_day = np.full(n, m.as_of + 1)
    c.upd_sec = rng.integers(7 * 3600, 11 * 3600, n)
    # edited entries were re-approved just before the edit was saved
    c.appr_day = np.where(delete, c.appr_day, c.upd_day)
    c.appr_sec = np.where(delete, c.appr_sec, c.upd_sec - rng.integers(0, 900, n))
    c.deleted = delete
    return c
