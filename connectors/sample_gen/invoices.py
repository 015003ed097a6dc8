"""Invoice proposals (one row per line) for a sample of projects.

Time lines group approved billable entries of a time-and-materials project by
calendar month, role and rate; they list the entry ids behind them and their
amount is quantity x unit price exactly (rates are whole currency units, hours
quarter hours). Fixed-fee instalments, milestones, expenses and discounts fill
in the other line kinds.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.sample_gen import catalog as cat
from connectors.sample_gen.entries import Entries
from connectors.sample_gen.master import Master
from connectors.sample_gen.strings import EPOCH, Calendar, day_number, fmt_cents, fmt_ids, take

INVOICE_COLUMNS: tuple[str, ...] = (
    "invoice_id", "project_code", "customer_id", "currency", "issue_date", "due_date",
    "status", "line_no", "line_kind", "description", "quantity", "unit_price", "amount",
    "entry_ids", "updated_at",
)  # fmt: skip
INVOICE_STATUSES: tuple[str, ...] = ("draft", "released", "cancelled")
LINE_KINDS: tuple[str, ...] = ("time", "milestone", "expense", "fixed_fee", "adjustment")
_TIME, _MILESTONE, _EXPENSE, _FIXED, _ADJUST = range(5)


def _at_least_one(mask: np.ndarray) -> np.ndarray:
    """The mask, with its first element set if it selects nothing (small samples)."""
    if len(mask) and not mask.any():
        mask = mask.copy()
        mask[0] = True
    return mask


def billing_periods(m: Master) -> list[tuple[int, int, str]]:
    """Calendar months lying fully inside the time-entry window: (first, last, label)."""
    out: list[tuple[int, int, str]] = []
    d = EPOCH + timedelta(days=m.win_lo)
    month = date(d.year, d.month, 1)
    while True:
        nxt = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        first, last = day_number(month), day_number(nxt) - 1
        if last > m.win_hi:
            return out
        if first >= m.win_lo:
            out.append((first, last, f"{cat.MONTH_NAMES[month.month - 1]} {month.year}"))
        month = nxt


def build_invoices(
    m: Master,
    e: Entries,
    clean: np.ndarray,
    rng: np.random.Generator,
    cal: Calendar,
    customer_ids: pa.Array,
    project_codes: pa.Array,
) -> pa.Table:
    """The invoices dataset as an Arrow table of strings."""
    periods = billing_periods(m)
    n_per = len(periods)
    anchors = np.zeros(m.n_proj, bool)
    anchors[np.concatenate([m.tm_anchor, m.ff_anchor, m.ff_anchor + 1])] = True
    open_ = m.proj_status == cat.OPEN
    sampled = open_ & (anchors | (rng.random(m.n_proj) < 0.3))
    if n_per == 0:
        return pa.table({c: pa.array([], pa.string()) for c in INVOICE_COLUMNS})
    starts = np.array([p[0] for p in periods])
    ends = np.array([p[1] for p in periods])

    # --- time lines
    per = np.searchsorted(starts, e.day, side="right") - 1
    in_period = (per >= 0) & (e.day <= ends[np.clip(per, 0, n_per - 1)])
    mask = (
        clean
        & (e.status == cat.APPROVED)
        & e.billable
        & (m.proj_billing[np.minimum(e.proj, m.n_proj - 1)] == cat.TM)
        & sampled[np.minimum(e.proj, m.n_proj - 1)]
        & in_period
    )
    idx = np.flatnonzero(mask)
    role = m.emp_role[e.emp[idx]]
    inv_key = e.proj[idx] * n_per + per[idx]
    line_key = (inv_key * 4 + role) * 4096 + e.rate[idx]
    order = np.argsort(line_key, kind="stable")
    idx, line_key = idx[order], line_key[order]
    keys, first, n_in = np.unique(line_key, return_index=True, return_counts=True)
    t_rate = keys % 4096
    t_role = (keys // 4096) % 4
    t_inv = keys // 4096 // 4
    t_qty_q = np.add.reduceat(e.hq[idx], first) if len(idx) else np.zeros(0, np.int64)
    offsets = pa.array(np.concatenate([first, [len(idx)]]).astype(np.int32))
    id_lists = pa.ListArray.from_arrays(offsets, fmt_ids("TE", e.eid[idx], 9))
    t_ids = pc.binary_join(id_lists, ";")
    t_desc_table = [
        f"Professional services {label} – {r}" for _, _, label in periods for r in cat.ROLES
    ]
    t_desc = take(t_desc_table, (t_inv % n_per) * 4 + t_role)

    # --- invoices: one per (project, period) with time, plus fixed-fee and milestone ones
    tm_inv = np.unique(t_inv)
    ff = np.flatnonzero(sampled & (m.proj_billing == cat.FIXED))
    ff_inv = (ff[:, None] * n_per + np.arange(n_per)[None, :]).reshape(-1)
    ms = np.flatnonzero(sampled & (m.proj_billing == cat.MILESTONE))
    ms_inv = ms * n_per + rng.integers(0, n_per, len(ms))
    inv_keys = np.unique(np.concatenate([tm_inv, ff_inv, ms_inv]))
    i_proj, i_per = inv_keys // n_per, inv_keys % n_per
    n_inv = len(inv_keys)
    last = i_per == n_per - 1
    u = rng.random(n_inv)
    i_status = np.where(
        last,
        np.where(u < 0.60, 0, np.where(u < 0.97, 1, 2)),
        np.where(u < 0.10, 0, np.where(u < 0.95, 1, 2)),
    )
    i_ent = m.proj_ent[i_proj]
    issue = np.minimum(ends[i_per] + rng.integers(1, 6, n_inv), m.as_of)
    due = issue + np.asarray(cat.PAYMENT_TERMS_DAYS)[i_ent]
    upd_day = np.where(i_status == 0, np.minimum(issue + rng.integers(0, 3, n_inv), m.as_of), issue)
    upd_sec = rng.integers(8 * 3600, 19 * 3600, n_inv)

    # --- other lines (quantities and amounts in cents)
    inv_of = {
        k: np.searchsorted(inv_keys, v) for k, v in (("t", t_inv), ("ff", ff_inv), ("ms", ms_inv))
    }
    fee = np.rint(rng.uniform(5_000, 40_000, m.n_proj) / 500) * 500 * 100
    ms_amount = np.rint(rng.uniform(10_000, 120_000, len(ms)) / 500) * 500 * 100
    tm_inv_pos = np.searchsorted(inv_keys, tm_inv)
    exp_inv = tm_inv_pos[_at_least_one(rng.random(len(tm_inv)) < 0.3)]
    exp_amount = rng.integers(8_000, 250_001, len(exp_inv))
    time_cents = np.bincount(inv_of["t"], weights=t_qty_q * 25 * t_rate, minlength=n_inv)
    adj_inv = tm_inv_pos[_at_least_one(rng.random(len(tm_inv)) < 0.06)]
    adj_amount = -np.maximum(100, np.rint(time_cents[adj_inv] * 0.05 / 100) * 100)
    labels = [p[2] for p in periods]

    line_inv = np.concatenate([inv_of["t"], inv_of["ff"], inv_of["ms"], exp_inv, adj_inv])
    kind = np.concatenate([
        np.full(len(t_inv), _TIME), np.full(len(ff_inv), _FIXED), np.full(len(ms_inv), _MILESTONE),
        np.full(len(exp_inv), _EXPENSE), np.full(len(adj_inv), _ADJUST),
    ])  # fmt: skip
    one = 100
    qty = np.concatenate([
        t_qty_q * 25, np.full(len(ff_inv) + len(ms_inv) + len(exp_inv) + len(adj_inv), one),
    ]).astype(np.int64)  # fmt: skip
    price = np.concatenate([
        t_rate * 100, fee[ff_inv // n_per], ms_amount, exp_amount, adj_amount,
    ]).astype(np.int64)  # fmt: skip
    amount = qty * price // 100
    desc = pa.concat_arrays([
        t_desc,
        take([f"Fixed fee instalment {x}" for x in labels], ff_inv % n_per),
        take(cat.MILESTONES, rng.integers(0, len(cat.MILESTONES), len(ms_inv))),
        take([f"Travel and expenses {x}" for x in labels], i_per[exp_inv]),
        take(["Volume discount 5%"], np.zeros(len(adj_inv), np.int64)),
    ])  # fmt: skip
    ids = pa.concat_arrays([t_ids, pa.nulls(len(line_inv) - len(t_inv), pa.string())])

    order = np.lexsort((np.arange(len(line_inv)), line_inv))
    line_inv, kind, qty, price, amount = (a[order] for a in (line_inv, kind, qty, price, amount))
    desc, ids = desc.take(pa.array(order)), ids.take(pa.array(order))
    group_first = np.searchsorted(line_inv, line_inv, side="left")
    line_no = np.arange(len(line_inv)) - group_first + 1

    proj = i_proj[line_inv]
    return pa.table(
        {
            "invoice_id": fmt_ids("IP", line_inv + 1, 7),
            "project_code": take(project_codes, proj),
            "customer_id": take(customer_ids, m.proj_cust[proj]),
            "currency": take(cat.CURRENCIES, i_ent[line_inv]),
            "issue_date": cal.fmt_dates(issue[line_inv]),
            "due_date": cal.fmt_dates(due[line_inv]),
            "status": take(INVOICE_STATUSES, i_status[line_inv]),
            "line_no": pc.cast(pa.array(line_no), pa.string()),
            "line_kind": take(LINE_KINDS, kind),
            "description": desc,
            "quantity": fmt_cents(qty),
            "unit_price": fmt_cents(price),
            "amount": fmt_cents(amount),
            "entry_ids": ids,
            "updated_at": cal.fmt_timestamps(upd_day[line_inv], upd_sec[line_inv], i_ent[line_inv]),
        }
    )
