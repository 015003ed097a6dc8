"""Arrow tables of strings for every dataset, in the canonical column order."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.sample_gen import catalog as cat
from connectors.sample_gen.entries import Entries, description_table
from connectors.sample_gen.master import BIG_DAY, PROJECT_CODE_BASE, Master
from connectors.sample_gen.strings import (
    Calendar,
    fmt_bool,
    fmt_cents,
    fmt_ids,
    join,
    ordered_map,
    row_chunks,
    take,
)

COLUMNS: dict[str, tuple[str, ...]] = {
    "time_entries": (
        "entry_id", "employee_id", "employee_name", "project_code", "task_code", "work_date",
        "hours", "billable", "bill_rate", "currency", "approval_status", "approved_at",
        "approved_by", "description", "updated_at", "deleted",
    ),
    "employees": (
        "employee_id", "employee_name", "legal_entity", "role", "cost_rate", "currency", "active",
    ),
    "projects": (
        "project_code", "project_name", "customer_id", "customer_name", "legal_entity",
        "currency", "billing_method", "status", "start_date", "end_date", "updated_at",
    ),
    "project_tasks": ("project_code", "task_code", "task_name", "billable"),
    "rate_cards": (
        "project_code", "employee_id", "role", "bill_rate", "currency", "valid_from", "valid_to",
    ),
    "assignments": (
        "assignment_id", "employee_id", "project_code", "task_code", "role", "week_start",
        "start_date", "end_date", "planned_hours", "bill_rate", "updated_at", "deleted",
    ),
    "fx_rates": ("rate_date", "from_currency", "to_currency", "rate", "source", "updated_at"),
}  # fmt: skip


def employee_ids(n: int) -> pa.StringArray:
    return fmt_ids("E", np.arange(1, n + 1), 6)


def project_codes(n: int) -> pa.StringArray:
    return fmt_ids("PRJ-", np.arange(PROJECT_CODE_BASE, PROJECT_CODE_BASE + n), 5)


def employee_names(first: np.ndarray, last: np.ndarray) -> pa.StringArray:
    """Full names from indices into the flattened first- and last-name tables."""
    firsts = [x for names in cat.FIRST_NAMES for x in names]
    lasts = [x for names in cat.LAST_NAMES for x in names]
    return join(take(firsts, first), " ", take(lasts, last))


def customer_tables(m: Master) -> tuple[pa.StringArray, pa.StringArray]:
    """Customer ids and names, by customer index (internal customers last)."""
    n_ent = len(cat.ENTITIES)
    n_ext = len(m.cust_ent) - n_ent
    ids = pa.concat_arrays(
        [fmt_ids("C", np.arange(1, n_ext + 1), 5), pa.array([f"INT-{x}" for x in cat.ENTITIES])]
    )
    suffixes = [s for group in cat.CUSTOMER_SUFFIXES for s in group]
    regular = join(
        take(cat.CUSTOMER_STEMS, m.cust_stem[:n_ext]),
        " ",
        take(cat.CUSTOMER_SECTORS, m.cust_sector[:n_ext]),
        " ",
        take(suffixes, m.cust_ent[:n_ext] * 3 + m.cust_suffix[:n_ext]),
    )
    odd = m.cust_odd[:n_ext]
    regular = pc.if_else(
        pa.array(odd >= 0), take(cat.ODD_CUSTOMER_NAMES, np.maximum(odd, 0)), regular
    )
    names = pa.concat_arrays([regular, pa.array([f"Internal ({x})" for x in cat.ENTITIES])])
    return ids, names


def employees_table(m: Master) -> pa.Table:
    return pa.table(
        {
            "employee_id": employee_ids(m.n_emp),
            "employee_name": employee_names(m.emp_first, m.emp_last),
            "legal_entity": take(cat.ENTITIES, m.emp_ent),
            "role": take(cat.ROLES, m.emp_role),
            "cost_rate": fmt_cents(m.emp_cost_cents),
            "currency": take(cat.CURRENCIES, m.emp_ent),
            "active": fmt_bool(m.emp_active),
        }
    )


def projects_table(m: Master, cal: Calendar) -> pa.Table:
    cust_ids, cust_names = customer_tables(m)
    internal = m.proj_billing == cat.NON_BILLABLE
    stem_of_cust = take(cat.CUSTOMER_STEMS, np.maximum(m.cust_stem, 0))
    client_name = join(
        take(cat.ENGAGEMENTS, np.where(internal, 0, m.proj_name_kind)),
        " – ",
        take(stem_of_cust, m.proj_cust),
    )
    internal_name = join(
        take(cat.INTERNAL_PROJECTS, np.where(internal, m.proj_name_kind, 0)),
        " (",
        take(cat.ENTITIES, m.proj_ent),
        ")",
    )
    return pa.table(
        {
            "project_code": project_codes(m.n_proj),
            "project_name": pc.if_else(pa.array(internal), internal_name, client_name),
            "customer_id": take(cust_ids, m.proj_cust),
            "customer_name": take(cust_names, m.proj_cust),
            "legal_entity": take(cat.ENTITIES, m.proj_ent),
            "currency": take(cat.CURRENCIES, m.proj_ent),
            "billing_method": take(cat.BILLING_METHODS, m.proj_billing),
            "status": take(cat.PROJECT_STATUSES, m.proj_status),
            "start_date": cal.fmt_dates(m.proj_start),
            "end_date": cal.fmt_dates(m.proj_end),
            "updated_at": cal.fmt_timestamps(m.proj_updated_day, m.proj_updated_sec, m.proj_ent),
        }
    )


def project_tasks_table(m: Master) -> pa.Table:
    proj, code = np.nonzero(m.has_code)
    return pa.table(
        {
            "project_code": take(project_codes(m.n_proj), proj),
            "task_code": take(cat.TASK_CODES, code),
            "task_name": take(cat.TASK_NAMES, code),
            "billable": fmt_bool(code < cat.N_BILLABLE_TASKS),
        }
    )


def rate_cards_table(m: Master, cal: Calendar) -> pa.Table:
    """Role cards (one or two validity periods), anyone cards, per-employee cards."""
    role_p = np.flatnonzero(m.rate_style == 1)
    rp = np.repeat(role_p, 4)
    rr = np.tile(np.arange(4), len(role_p))
    split = m.change_day[rp] < BIG_DAY
    # period 1 (until the change, if any) and period 2 (from the change)
    p1_to = np.where(split, m.change_day[rp] - 1, m.card_to[rp])
    sp = rp[split]
    anyone_p = np.flatnonzero(m.rate_style == 2)
    ov_p, ov_e = m.ov_key // m.n_emp, m.ov_key % m.n_emp

    proj = np.concatenate([rp, sp, anyone_p, ov_p])
    emp = np.concatenate([np.full(len(rp) + len(sp) + len(anyone_p), -1), ov_e])
    role = np.concatenate([rr, rr[split], np.full(len(anyone_p) + len(ov_p), -1)])
    rate = np.concatenate(
        [m.role_rate[rp, rr, 0], m.role_rate[sp, rr[split], 1], m.anyone_rate[anyone_p], m.ov_rate]
    )
    valid_from = np.concatenate(
        [m.proj_start[rp], m.change_day[sp], m.proj_start[anyone_p], m.ov_from]
    )
    valid_to = np.concatenate(
        [p1_to, m.card_to[sp], m.card_to[anyone_p], np.full(len(ov_p), BIG_DAY)]
    )
    valid_to = np.where(valid_to >= BIG_DAY, -1, valid_to)
    order = np.lexsort((valid_from, role, emp, proj))
    proj, emp, role, rate = proj[order], emp[order], role[order], rate[order]
    valid_from, valid_to = valid_from[order], valid_to[order]
    return pa.table(
        {
            "project_code": take(project_codes(m.n_proj), proj),
            "employee_id": take(employee_ids(m.n_emp), emp),
            "role": take(cat.ROLES, role),
            "bill_rate": fmt_cents(rate * 100),
            "currency": take(cat.CURRENCIES, m.proj_ent[proj]),
            "valid_from": cal.fmt_dates(valid_from),
            "valid_to": cal.fmt_dates(valid_to),
        }
    )


def time_entries_batches(
    m: Master,
    e: Entries,
    cal: Calendar,
    extra_emp_names: pa.StringArray | None = None,
    text: dict[str, tuple[np.ndarray, list[str]]] | None = None,
) -> Iterator[pa.Table]:
    """Time entries as consecutive row chunks; `text` replaces values at given rows.

    Chunks are formatted on a thread pool (Arrow kernels release the GIL) and
    can be written as they come: memory is reused instead of materialising
    the whole export, which is what costs most on a VM.
    """
    n_emp_all = max(m.n_emp, int(e.emp.max()) + 1 if len(e) else 0)
    n_proj_all = max(m.n_proj, int(e.proj.max()) + 1 if len(e) else 0)
    names = employee_names(m.emp_first, m.emp_last)
    if extra_emp_names is not None and len(extra_emp_names):
        names = pa.concat_arrays([names, extra_emp_names])
    emp_ids = employee_ids(n_emp_all)
    codes = project_codes(n_proj_all)
    descriptions = pa.array(description_table(), pa.string())
    overrides = [
        (column, np.asarray(rows), np.asarray(values, dtype=object))
        for column, (rows, values) in (text or {}).items()
        if len(rows)
    ]

    def chunk(lo: int, hi: int) -> pa.Table:
        c = e.slice(lo, hi)
        cols = {
            "entry_id": fmt_ids("TE", c.eid, 9),
            "employee_id": take(emp_ids, c.emp),
            "employee_name": take(names, c.emp),
            "project_code": take(codes, c.proj),
            "task_code": take(cat.TASK_CODES, c.code),
            "work_date": cal.fmt_dates(c.day),
            "hours": fmt_cents(c.hq * 25),
            "billable": fmt_bool(c.billable),
            "bill_rate": fmt_cents(c.rate * 100, null=~c.rate_shown | (c.rate < 0)),
            "currency": take(cat.CURRENCIES, c.cur),
            "approval_status": take(cat.APPROVAL_STATUSES, c.status),
            "approved_at": cal.fmt_timestamps(c.appr_day, np.maximum(c.appr_sec, 0), c.tz),
            "approved_by": take(emp_ids, np.where(c.appr_day >= 0, c.approver, -1)),
            "description": take(descriptions, c.desc),
            "updated_at": cal.fmt_timestamps(c.upd_day, c.upd_sec, c.tz),
            "deleted": fmt_bool(c.deleted),
        }
        for column, rows, values in overrides:
            inside = (rows >= lo) & (rows < hi)
            if inside.any():
                order = np.argsort(rows[inside])
                mask = np.zeros(hi - lo, bool)
                mask[rows[inside] - lo] = True
                replacement = pa.array(list(values[inside][order]), pa.string())
                cols[column] = pc.replace_with_mask(cols[column], pa.array(mask), replacement)
        return pa.table(cols)

    return ordered_map(lambda r: chunk(*r), row_chunks(len(e)))


def time_entries_table(
    m: Master,
    e: Entries,
    cal: Calendar,
    extra_emp_names: pa.StringArray | None = None,
    text: dict[str, tuple[np.ndarray, list[str]]] | None = None,
) -> pa.Table:
    """All time entries as one (chunked) table."""
    return pa.concat_tables(time_entries_batches(m, e, cal, extra_emp_names, text))


def assignments_table(m: Master, cal: Calendar) -> pa.Table:
    """Resource plans: each employee planned on each of their projects over the time-entry
    window, one date range each, 8 hours a working day shared equally between the projects
    (to the cent of an hour, rounded down); no task, no rate. Drawn from the master data
    only, so the rest of the sample is unchanged."""
    emp = np.repeat(np.arange(m.n_emp), m.emp_nproj)
    slot = np.arange(len(emp)) - np.repeat(np.cumsum(m.emp_nproj) - m.emp_nproj, m.emp_nproj)
    pairs = np.unique(emp * m.n_proj + m.emp_proj[emp, slot])  # a project listed twice: once
    emp, proj = pairs // m.n_proj, pairs % m.n_proj
    epoch = np.datetime64("1970-01-01", "D")
    working_days = int(np.busday_count(epoch + m.win_lo, epoch + m.win_hi + 1))
    cents = working_days * 800 // np.bincount(emp, minlength=m.n_emp)[emp]
    n = len(emp)
    none = pa.nulls(n, pa.string())
    return pa.table(
        {
            "assignment_id": fmt_ids("AS", np.arange(1, n + 1), 9),
            "employee_id": take(employee_ids(m.n_emp), emp),
            "project_code": take(project_codes(m.n_proj), proj),
            "task_code": none,
            "role": take(cat.ROLES, m.emp_role[emp]),
            "week_start": none,
            "start_date": cal.fmt_dates(np.full(n, m.win_lo)),
            "end_date": cal.fmt_dates(np.full(n, m.win_hi)),
            "planned_hours": fmt_cents(cents),
            "bill_rate": none,
            "updated_at": none,
            "deleted": take(["false"], np.zeros(n, np.int64)),
        }
    )


#: Exchange rates of the sample (docs/intercompany.md): each non-USD currency of the catalog
#: to USD (its first currency), one rate per business day, and base rates they wobble around.
FX_BASE = {"EUR": 10834, "GBP": 12650}  # x 0.0001


def fx_rates_table(cal: Calendar, as_of_day: int) -> pa.Table:
    """Business-day rates from the calendar's first day to the export date, deterministic (no
    random stream: the other datasets do not change), 4 decimals, source `sample`."""
    days = np.arange(cal.first, min(as_of_day, cal.first + cal.n_days - 1) + 1)
    weekday = (days + 3) % 7  # day 0 is 1970-01-01, a Thursday: Monday = 0
    days = days[weekday < 5]
    base_cur = cat.CURRENCIES[0]
    rows: dict[str, list] = {c: [] for c in COLUMNS["fx_rates"]}
    for cur, base in FX_BASE.items():
        if cur not in cat.CURRENCIES or cur == base_cur:
            continue
        wobble = (days * 7919) % 201 - 100  # -100..100 ten-thousandths
        rates = base + wobble
        dates = take(cal.dates, days - cal.first).to_pylist()
        rows["rate_date"] += dates
        rows["from_currency"] += [cur] * len(days)
        rows["to_currency"] += [base_cur] * len(days)
        rows["rate"] += [f"{r // 10000}.{r % 10000:04d}" for r in rates.tolist()]
        rows["source"] += ["sample"] * len(days)
        rows["updated_at"] += [f"{d}T16:00:00Z" for d in dates]
    return pa.table({c: pa.array(v, pa.string()) for c, v in rows.items()})
