"""Consistent master data: employees, customers, projects, tasks, rate cards, staffing.

Everything is kept as numpy arrays indexed by position (employee i has id
`E{i+1:06d}`, project p has code `PRJ-{10001+p}`) so the time-entry generator
can join by fancy indexing instead of lookups. A handful of "anchor" projects
per legal entity have guaranteed properties (open over the whole window, with
or without rate cards) that bad-row injection relies on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from connectors.sample_gen import catalog as cat

BIG_DAY = 10**7  # stands for "open-ended" in date comparisons
WINDOW_DAYS = 90
PROJECT_CODE_BASE = 10_001
STRUCTURED_PER_ENTITY = 6  # TM anchor, fixed-fee anchor, milestone, internal, closed, on hold


@dataclass
class Master:
    """Master data of one sample, as arrays (see module docstring for the id scheme)."""

    as_of: int  # day number of the export date
    win_lo: int  # first day of the time-entry window
    win_hi: int  # last day of the time-entry window (as_of - 1)
    # employees
    emp_ent: np.ndarray
    emp_role: np.ndarray
    emp_cost_cents: np.ndarray
    emp_active: np.ndarray
    emp_first: np.ndarray  # index into the flattened first-name table
    emp_last: np.ndarray
    emp_manager: np.ndarray  # who approves the employee's time: a manager or partner
    # customers (the last len(ENTITIES) are the internal ones)
    cust_ent: np.ndarray
    cust_stem: np.ndarray
    cust_sector: np.ndarray
    cust_suffix: np.ndarray
    cust_odd: np.ndarray  # index into ODD_CUSTOMER_NAMES or -1
    # projects
    proj_ent: np.ndarray
    proj_cust: np.ndarray
    proj_billing: np.ndarray
    proj_status: np.ndarray
    proj_start: np.ndarray
    proj_end: np.ndarray  # -1: blank
    proj_name_kind: np.ndarray  # index into ENGAGEMENTS or INTERNAL_PROJECTS
    proj_updated_day: np.ndarray
    proj_updated_sec: np.ndarray
    bill_codes: np.ndarray  # [n_proj, N_BILLABLE_TASKS] task-code indices, -1 padded
    n_bill_codes: np.ndarray
    nb_codes: np.ndarray  # [n_proj, N_NB_TASKS]
    n_nb_codes: np.ndarray
    # rate cards
    rate_style: np.ndarray  # 0 none, 1 per role, 2 one rate for anyone
    role_rate: np.ndarray  # [n_proj, 4 roles, 2 periods]
    change_day: np.ndarray  # first day of period 2, BIG_DAY if none
    anyone_rate: np.ndarray
    card_to: np.ndarray  # last valid day of the cards, BIG_DAY if open-ended
    ov_key: np.ndarray  # sorted proj * n_emp + emp of per-employee cards
    ov_from: np.ndarray
    ov_rate: np.ndarray
    # staffing
    emp_proj: np.ndarray  # [n_emp, 3] project indices
    emp_nproj: np.ndarray
    tm_anchor: np.ndarray  # per entity
    ff_anchor: np.ndarray
    closed_by_ent: list[np.ndarray]

    @property
    def n_emp(self) -> int:
        return len(self.emp_ent)

    @property
    def n_proj(self) -> int:
        return len(self.proj_ent)

    @property
    def has_code(self) -> np.ndarray:
        """[n_proj, n_codes] whether the project carries the task code."""
        out = np.zeros((self.n_proj, len(cat.TASK_CODES)), dtype=bool)
        for mat in (self.bill_codes, self.nb_codes):
            rows, cols = np.nonzero(mat >= 0)
            out[rows, mat[rows, cols]] = True
        return out

    def effective_range(self, proj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First and last day inside the window on which the project accepts time."""
        end = np.where(self.proj_end[proj] < 0, BIG_DAY, self.proj_end[proj])
        return np.maximum(self.proj_start[proj], self.win_lo), np.minimum(end, self.win_hi)

    def standard_rate(self, emp: np.ndarray) -> np.ndarray:
        """The entity's list rate for the employee's role (used where no card applies)."""
        return np.asarray(cat.BASE_RATES)[self.emp_ent[emp], self.emp_role[emp]]

    def card_rate(self, proj: np.ndarray, emp: np.ndarray, day: np.ndarray) -> np.ndarray:
        """The rate a project's rate card gives, ignoring validity; -1 if no card.

        Precedence: a card for the employee beats a card for the role beats a
        card for anyone. Within one key validity periods never overlap.
        """
        proj = np.asarray(proj, np.int64)
        emp = np.asarray(emp, np.int64)
        day = np.asarray(day, np.int64)
        style = self.rate_style[:, None, None]
        table = np.where(style == 1, self.role_rate, -1)
        table = np.where(style == 2, self.anyone_rate[:, None, None], table).reshape(-1)
        period = day >= self.change_day[proj]
        rate = table[(proj * 4 + self.emp_role[emp]) * 2 + period]
        if len(self.ov_key):
            has_ov = np.zeros(self.n_proj, bool)
            has_ov[self.ov_key // self.n_emp] = True
            sel = np.flatnonzero(has_ov[proj])
            key = proj[sel] * self.n_emp + emp[sel]
            pos = np.minimum(np.searchsorted(self.ov_key, key), len(self.ov_key) - 1)
            hit = (self.ov_key[pos] == key) & (day[sel] >= self.ov_from[pos])
            rate[sel[hit]] = self.ov_rate[pos[hit]]
        return rate

    def resolve_rate(self, proj: np.ndarray, emp: np.ndarray, day: np.ndarray) -> np.ndarray:
        """The rate card rate valid on `day`, or -1 when no card covers it."""
        rate = self.card_rate(proj, emp, day)
        valid = (day >= self.proj_start[proj]) & (day <= self.card_to[proj])
        return np.where(valid, rate, -1)


def _round5(x: np.ndarray) -> np.ndarray:
    return (np.rint(np.asarray(x, float) / 5) * 5).astype(np.int64)


def _pick_rows(rng: np.random.Generator, k: np.ndarray, width: int) -> np.ndarray:
    """Per row, k[row] distinct random columns out of `width`, -1 padded."""
    order = rng.random((len(k), width)).argsort(axis=1)
    return np.where(np.arange(width)[None, :] < k[:, None], order, -1)


def name_indices(rng: np.random.Generator, ent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Random first/last-name indices (flattened tables) matching each legal entity."""
    n_first = np.array([len(x) for x in cat.FIRST_NAMES])
    n_last = np.array([len(x) for x in cat.LAST_NAMES])
    first_base = np.concatenate([[0], np.cumsum(n_first)[:-1]])
    last_base = np.concatenate([[0], np.cumsum(n_last)[:-1]])
    first = first_base[ent] + rng.integers(0, n_first[ent])
    last = last_base[ent] + rng.integers(0, n_last[ent])
    return first, last


def _employees(rng: np.random.Generator, n_emp: int) -> dict[str, np.ndarray]:
    n_ent = len(cat.ENTITIES)
    # Four fixed employees per entity guarantee approvers and every role exist.
    fixed_ent = np.repeat(np.arange(n_ent), 4)
    fixed_role = np.tile(np.array([2, 3, 0, 1]), n_ent)
    rest = n_emp - len(fixed_ent)
    ent = np.concatenate([fixed_ent, rng.choice(n_ent, rest, p=cat.ENTITY_WEIGHTS)])
    role = np.concatenate([fixed_role, rng.choice(4, rest, p=cat.ROLE_WEIGHTS)])
    active = np.concatenate([np.ones(len(fixed_ent), bool), rng.random(rest) >= 0.03])
    base_cost = np.asarray(cat.BASE_COST_CENTS)[ent, role]
    cost = (np.rint(base_cost * rng.uniform(0.85, 1.15, n_emp) / 50) * 50).astype(np.int64)
    first, last = name_indices(rng, ent)
    return {
        "emp_ent": ent.astype(np.int64),
        "emp_role": role.astype(np.int64),
        "emp_cost_cents": cost,
        "emp_active": active,
        "emp_first": first,
        "emp_last": last,
    }


def _customers(rng: np.random.Generator, n_cust: int) -> dict[str, np.ndarray]:
    n_ent = len(cat.ENTITIES)
    ent = np.concatenate(
        [np.arange(n_ent), rng.choice(n_ent, n_cust - n_ent, p=cat.ENTITY_WEIGHTS)]
    )
    odd = np.where(
        rng.random(n_cust) < 0.03, rng.integers(0, len(cat.ODD_CUSTOMER_NAMES), n_cust), -1
    )
    return {
        "cust_ent": np.concatenate([ent, np.arange(n_ent)]),  # + one internal per entity
        "cust_stem": np.concatenate(
            [rng.integers(0, len(cat.CUSTOMER_STEMS), n_cust), np.full(n_ent, -1)]
        ),
        "cust_sector": np.concatenate(
            [rng.integers(0, len(cat.CUSTOMER_SECTORS), n_cust), np.full(n_ent, -1)]
        ),
        "cust_suffix": np.concatenate([rng.integers(0, 3, n_cust), np.full(n_ent, -1)]),
        "cust_odd": np.concatenate([odd, np.full(n_ent, -1)]),
    }


def _projects(
    rng: np.random.Generator, n_proj: int, as_of: int, cust_ent: np.ndarray, n_cust: int
) -> dict[str, np.ndarray]:
    """Projects: the structured ones first (per entity), then random ones."""
    n_ent = len(cat.ENTITIES)
    s_ent = np.repeat(np.arange(n_ent), STRUCTURED_PER_ENTITY)
    s_bill = np.tile(
        np.array([cat.TM, cat.FIXED, cat.MILESTONE, cat.NON_BILLABLE, cat.TM, cat.TM]), n_ent
    )
    s_stat = np.tile(np.array([cat.OPEN] * 4 + [cat.CLOSED, cat.ON_HOLD]), n_ent)
    rest = n_proj - len(s_ent)
    r_ent = rng.choice(n_ent, rest, p=cat.ENTITY_WEIGHTS)
    r_bill = rng.choice(4, rest, p=[0.60, 0.15, 0.10, 0.15])
    r_stat = rng.choice(3, rest, p=[0.92, 0.03, 0.05])
    r_stat = np.where(r_bill == cat.NON_BILLABLE, cat.OPEN, r_stat)
    ent = np.concatenate([s_ent, r_ent]).astype(np.int64)
    billing = np.concatenate([s_bill, r_bill]).astype(np.int64)
    status = np.concatenate([s_stat, r_stat]).astype(np.int64)
    structured = np.arange(n_proj) < len(s_ent)
    client = billing != cat.NON_BILLABLE

    # Open projects mostly started long ago; some start inside the window, some
    # "open" ones already passed their end date (the PSA was not tidied up).
    # Every open project accepts time on at least 34 days of the window.
    start = as_of - rng.integers(100, 721, n_proj)
    end = np.full(n_proj, -1, np.int64)
    late_start = ~structured & client & (rng.random(n_proj) < 0.12)
    start = np.where(late_start, as_of - rng.integers(35, 76, n_proj), start)
    start = np.where(
        structured & (status == cat.OPEN), as_of - rng.integers(400, 701, n_proj), start
    )
    u = rng.random(n_proj)
    future_end = ~structured & client & (u < 0.42)
    past_end = ~structured & client & ~late_start & (u > 0.92)
    end = np.where(future_end, as_of + rng.integers(10, 366, n_proj), end)
    end = np.where(past_end, as_of - rng.integers(10, 51, n_proj), end)
    closed = status == cat.CLOSED
    start = np.where(closed, as_of - rng.integers(500, 901, n_proj), start)
    end = np.where(closed, as_of - rng.integers(100, 301, n_proj), end)
    on_hold = status == cat.ON_HOLD
    start = np.where(on_hold, as_of - rng.integers(100, 401, n_proj), start)
    end = np.where(on_hold, -1, end)
    upd_day = np.maximum(start, as_of - rng.integers(0, 61, n_proj))
    upd_day = np.where(closed, end + rng.integers(1, 30, n_proj), upd_day)

    # customers of the same legal entity; internal projects bill the internal customer
    cust = np.empty(n_proj, np.int64)
    for e in range(n_ent):
        pool = np.flatnonzero(cust_ent[:n_cust] == e)
        sel = ent == e
        cust[sel] = pool[rng.integers(0, len(pool), sel.sum())]
    cust = np.where(client, cust, n_cust + ent)
    name_kind = np.where(
        client,
        rng.integers(0, len(cat.ENGAGEMENTS), n_proj),
        rng.integers(0, len(cat.INTERNAL_PROJECTS), n_proj),
    )
    return {
        "proj_ent": ent,
        "proj_cust": cust,
        "proj_billing": billing,
        "proj_status": status,
        "proj_start": start.astype(np.int64),
        "proj_end": end,
        "proj_name_kind": name_kind,
        "proj_updated_day": upd_day,
        "proj_updated_sec": rng.integers(7 * 3600, 20 * 3600, n_proj),
    }


def _sorted_codes(codes: np.ndarray) -> np.ndarray:
    codes = np.sort(np.where(codes < 0, 99, codes), axis=1)
    return np.where(codes == 99, -1, codes)


def _tasks(rng: np.random.Generator, billing: np.ndarray) -> dict[str, np.ndarray]:
    """Client projects: 2-6 billable and 1-2 non-billable tasks; internal: 2-4 non-billable."""
    n_proj = len(billing)
    internal = billing == cat.NON_BILLABLE
    k_bill = np.where(internal, 0, rng.integers(2, 7, n_proj))
    k_nb = np.where(
        internal, rng.integers(2, cat.N_NB_TASKS + 1, n_proj), rng.integers(1, 3, n_proj)
    )
    bill_codes = _pick_rows(rng, k_bill, cat.N_BILLABLE_TASKS)
    nb_pick = _pick_rows(rng, k_nb, cat.N_NB_TASKS)
    # client projects draw non-billable tasks from the first N_CLIENT_NB_TASKS only
    client_nb = _pick_rows(rng, k_nb, cat.N_CLIENT_NB_TASKS)
    client_nb = np.pad(
        client_nb, ((0, 0), (0, cat.N_NB_TASKS - cat.N_CLIENT_NB_TASKS)), constant_values=-1
    )
    nb_pick = np.where(internal[:, None], nb_pick, client_nb)
    nb_codes = np.where(nb_pick >= 0, nb_pick + cat.N_BILLABLE_TASKS, -1)
    return {
        "bill_codes": _sorted_codes(bill_codes),
        "n_bill_codes": k_bill,
        "nb_codes": _sorted_codes(nb_codes),
        "n_nb_codes": k_nb,
    }


def _rate_cards(
    rng: np.random.Generator, as_of: int, p: dict[str, np.ndarray], structured: np.ndarray
) -> dict[str, np.ndarray]:
    """T&M projects carry per-role cards (80%, some with a rate rise) or one rate for anyone."""
    n_proj = len(p["proj_ent"])
    is_tm = p["proj_billing"] == cat.TM
    closed = p["proj_status"] == cat.CLOSED
    style = np.where(is_tm, np.where(rng.random(n_proj) < 0.8, 1, 2), 0)
    style = np.where(structured & is_tm, 1, style)
    mult = rng.choice(np.array([0.9, 0.95, 1.0, 1.05, 1.1, 1.2]), n_proj)
    base = np.asarray(cat.BASE_RATES)[p["proj_ent"]]  # [n_proj, 4]
    rate0 = _round5(base * mult[:, None])
    rate1 = np.maximum(rate0 + 5, _round5(rate0 * 1.05))
    change = as_of - rng.integers(20, 71, n_proj)
    has_change = (
        (style == 1) & ~closed & (rng.random(n_proj) < 0.4) & (change > p["proj_start"] + 1)
    )
    return {
        "rate_style": style,
        "role_rate": np.stack([rate0, rate1], axis=2),
        "change_day": np.where(has_change, change, BIG_DAY),
        "anyone_rate": _round5(base[:, 1] * mult),
        "card_to": np.where(closed, p["proj_end"], BIG_DAY),
    }


def _staffing(
    rng: np.random.Generator, emp: dict[str, np.ndarray], p: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Main and second client project of the employee's entity, plus an internal one."""
    n_emp = len(emp["emp_ent"])
    internal = p["proj_billing"] == cat.NON_BILLABLE
    is_open = p["proj_status"] == cat.OPEN
    emp_proj = np.zeros((n_emp, 3), np.int64)
    for e in range(len(cat.ENTITIES)):
        sel = emp["emp_ent"] == e
        k = int(sel.sum())
        clients = np.flatnonzero(is_open & ~internal & (p["proj_ent"] == e))
        internals = np.flatnonzero(is_open & internal & (p["proj_ent"] == e))
        emp_proj[sel, 0] = clients[rng.integers(0, len(clients), k)]
        emp_proj[sel, 1] = clients[rng.integers(0, len(clients), k)]
        emp_proj[sel, 2] = internals[rng.integers(0, len(internals), k)]
    emp_nproj = rng.choice(np.array([1, 2, 3]), n_emp, p=[0.30, 0.45, 0.25])
    return {"emp_proj": emp_proj, "emp_nproj": np.where(emp["emp_active"], emp_nproj, 0)}


def _employee_cards(
    rng: np.random.Generator,
    as_of: int,
    emp: dict[str, np.ndarray],
    p: dict[str, np.ndarray],
    rates: dict[str, np.ndarray],
    staff: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Per-employee cards on some staffed per-role-card projects, from a date onwards."""
    n_emp = len(emp["emp_ent"])
    ov_emp = np.repeat(np.arange(n_emp), 2)
    ov_proj = staff["emp_proj"][:, :2].reshape(-1)
    staffed = np.tile(np.array([True, False]), n_emp) | (np.repeat(staff["emp_nproj"], 2) >= 2)
    eligible = staffed & (rates["rate_style"][ov_proj] == 1)
    chosen = eligible & (rng.random(len(ov_proj)) < 0.10)
    if eligible.any() and not chosen.any():
        chosen[np.flatnonzero(eligible)[0]] = True  # small samples still show the case
    key = np.unique(ov_proj[chosen] * n_emp + ov_emp[chosen])
    ov_p, ov_e = key // n_emp, key % n_emp
    list_rate = rates["role_rate"][ov_p, emp["emp_role"][ov_e], 0]
    return {
        "ov_key": key,
        "ov_from": np.maximum(p["proj_start"][ov_p], as_of - rng.integers(20, 151, len(key))),
        "ov_rate": np.maximum(50, list_rate + 5 * rng.integers(-2, 5, len(key))),
    }


def _managers(rng: np.random.Generator, emp: dict[str, np.ndarray]) -> np.ndarray:
    """Each employee's time is approved by a manager or partner of the same entity."""
    ent, role = emp["emp_ent"], emp["emp_role"]
    manager = np.zeros(len(ent), np.int64)
    for e in range(len(cat.ENTITIES)):
        pool = np.flatnonzero((ent == e) & (role >= 2) & emp["emp_active"])
        sel = np.flatnonzero(ent == e)
        i = rng.integers(0, len(pool), len(sel))
        i = np.where(pool[i] == sel, (i + 1) % len(pool), i)
        manager[sel] = pool[i]
    return manager


def build_master(rng: np.random.Generator, n_entries: int, as_of: int) -> Master:
    """Master data scaled to the number of time entries (~180 entries per employee)."""
    n_ent = len(cat.ENTITIES)
    n_emp = max(4 * n_ent, round(n_entries / 180))
    n_proj = max(STRUCTURED_PER_ENTITY * n_ent, round(n_emp / 3))
    n_cust = max(2 * n_ent, n_proj // 3)
    structured = np.arange(n_proj) < STRUCTURED_PER_ENTITY * n_ent

    emp = _employees(rng, n_emp)
    cust = _customers(rng, n_cust)
    proj = _projects(rng, n_proj, as_of, cust["cust_ent"], n_cust)
    tasks = _tasks(rng, proj["proj_billing"])
    rates = _rate_cards(rng, as_of, proj, structured)
    staff = _staffing(rng, emp, proj)
    cards = _employee_cards(rng, as_of, emp, proj, rates, staff)
    closed = proj["proj_status"] == cat.CLOSED
    anchors = np.arange(n_ent) * STRUCTURED_PER_ENTITY
    return Master(
        as_of=as_of,
        win_lo=as_of - WINDOW_DAYS,
        win_hi=as_of - 1,
        emp_manager=_managers(rng, emp),
        **emp,
        **cust,
        **proj,
        **tasks,
        **rates,
        **cards,
        **staff,
        tm_anchor=anchors,
        ff_anchor=anchors + 1,
        closed_by_ent=[np.flatnonzero(closed & (proj["proj_ent"] == e)) for e in range(n_ent)],
    )
