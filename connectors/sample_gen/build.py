"""Everything of a sample except the formatted time entries, which stay lazy.

The time entries are by far the largest dataset; keeping them as numpy
columns plus a chunk iterator lets writers stream them to disk without ever
holding the whole export as strings.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa

from connectors.sample_gen import catalog as cat
from connectors.sample_gen.bad import BAD_KINDS, BadRows, inject_bad_rows
from connectors.sample_gen.corrections import generate_corrections
from connectors.sample_gen.entries import Entries, generate_entries
from connectors.sample_gen.expenses import ENTRIES_PER_EXPENSE, build_expenses
from connectors.sample_gen.invoices import build_invoices
from connectors.sample_gen.master import Master, build_master, name_indices
from connectors.sample_gen.strings import Calendar, day_number, fmt_ids, take
from connectors.sample_gen.tables import (
    assignments_table,
    customer_tables,
    employee_names,
    employees_table,
    fx_rates_table,
    project_codes,
    project_tasks_table,
    projects_table,
    rate_cards_table,
    time_entries_batches,
    time_entries_table,
)

MAX_SHARE = 0.5


@dataclass
class Plan:
    """A generated sample; `time_entry_batches()` formats the entries chunk by chunk."""

    as_of: date
    n_entries: int
    small: dict[str, pa.Table]  # every dataset but time_entries
    corrections: pa.Table
    bad_rows: pa.Table
    expense_bad_rows: pa.Table
    master: Master
    entries: Entries
    calendar: Calendar
    extra_emp_names: pa.StringArray | None
    text: dict[str, tuple[np.ndarray, list[str]]] | None

    def time_entry_batches(self) -> Iterator[pa.Table]:
        return time_entries_batches(
            self.master, self.entries, self.calendar, self.extra_emp_names, self.text
        )


def check_options(
    n_entries: int, bad_share: float, bad_kinds: Sequence[str] | None, corrections_share: float
) -> list[str]:
    """Validated bad kinds (default: all), or ValueError for unusable options."""
    if n_entries < 0:
        raise ValueError("n_entries must be >= 0")
    for label, share in (("bad_share", bad_share), ("corrections_share", corrections_share)):
        if not 0.0 <= share <= MAX_SHARE:
            raise ValueError(f"{label} must be between 0 and {MAX_SHARE}, got {share}")
    if isinstance(bad_kinds, str):
        raise TypeError("bad_kinds must be a sequence of kind names, not a string")
    kinds = list(dict.fromkeys(bad_kinds)) if bad_kinds is not None else list(BAD_KINDS)
    unknown = sorted(set(kinds) - set(BAD_KINDS))
    if unknown or not kinds:
        raise ValueError(f"unknown bad kinds {unknown}; choose from {', '.join(BAD_KINDS)}")
    return kinds


def _share_count(n: int, share: float) -> int:
    return 0 if share <= 0 or n == 0 else max(1, round(n * share))


def _truth_table(bad: BadRows | None, eid: np.ndarray) -> pa.Table:
    rows = bad.rows if bad is not None else np.zeros(0, np.int64)
    kinds = bad.kinds if bad is not None else np.zeros(0, np.int64)
    return pa.table(
        {
            "row_index": pa.array(rows, pa.int64()),
            "entry_id": fmt_ids("TE", eid[rows], 9),
            "kind": take(BAD_KINDS, kinds),
        }
    )


def build_plan(
    n_entries: int,
    seed: int,
    as_of: date,
    bad_share: float,
    kinds: list[str],
    corrections_share: float,
) -> Plan:
    """Generate master data, entries, bad rows, corrections and invoices.

    Each part draws from its own random stream, so e.g. master data and clean
    entries do not change when only the bad-row options change.
    """
    as_of_day = day_number(as_of)
    # A sixth stream for expenses: the first five (and what they draw) are unchanged.
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    r_master, r_entries, r_bad, r_corr, r_inv, r_exp = streams

    m = build_master(r_master, n_entries, as_of_day)
    e = generate_entries(m, r_entries, n_entries)
    n_bad = _share_count(n_entries, bad_share)
    bad = inject_bad_rows(m, e, r_bad, n_bad, kinds) if n_bad else None
    extra_names = None
    if bad is not None and len(bad.extra_emp_ent):
        extra_names = employee_names(*name_indices(r_bad, bad.extra_emp_ent))
    clean = np.ones(len(e), bool)
    if bad is not None:
        clean[bad.rows] = False

    first_day = min(int(m.proj_start.min()), m.win_lo) - 10
    cal = Calendar(first_day, max(as_of_day + 60, int(m.proj_end.max())), cat.ZONES)
    candidates = np.flatnonzero(clean & (e.status == cat.APPROVED))
    corr = generate_corrections(
        m, e, r_corr, _share_count(n_entries, corrections_share), candidates
    )
    cust_ids, _ = customer_tables(m)
    small = {
        "employees": employees_table(m),
        "projects": projects_table(m, cal),
        "project_tasks": project_tasks_table(m),
        "rate_cards": rate_cards_table(m, cal),
        "invoices": build_invoices(m, e, clean, r_inv, cal, cust_ids, project_codes(m.n_proj)),
        "assignments": assignments_table(m, cal),
        "fx_rates": fx_rates_table(cal, as_of_day),
    }
    # Expenses: claimed on the employee, project, task and date of every n-th clean approved
    # entry (their master data holds), with their own bad rows.
    claimed = time_entries_table(m, e.take(candidates[::ENTRIES_PER_EXPENSE]), cal)
    expenses = build_expenses(claimed, r_exp, bad_share, _share_count)
    small["expenses"] = expenses.table
    return Plan(
        as_of=as_of,
        n_entries=n_entries,
        small=small,
        corrections=time_entries_table(m, corr, cal),
        bad_rows=_truth_table(bad, e.eid),
        expense_bad_rows=expenses.bad_rows,
        master=m,
        entries=e,
        calendar=cal,
        extra_emp_names=extra_names,
        text=bad.text if bad else None,
    )
