"""Seeded CRM deals and project templates for the project set-up (`crm_deals`,
`project_templates`), consistent with the sample's legal entities and currencies.

Templates use the sample's task catalog; deals are won (about two in three) or still open,
each in its legal entity's currency, with a template, a budget and a contract value of
budget x the entity's base rate. Deal ids (`DL00001`, ...) never collide with project codes.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pyarrow as pa

from connectors.sample_gen import catalog as cat

#: Template code -> indices into the task catalog (billable ones, then the client non-billable).
TEMPLATES: dict[str, tuple[int, ...]] = {
    "IMPL": (0, 1, 2, 3, 4, 5),
    "ADVISORY": (0, 4, 7),
    "SUPPORT": (6, 4),
}
STAGES = ("won", "won", "proposal", "negotiation", "lost")


def templates_table() -> pa.Table:
    codes, tasks, names, billable = [], [], [], []
    for code, idx in TEMPLATES.items():
        for i in idx:
            codes.append(code)
            tasks.append(cat.TASK_CODES[i])
            names.append(cat.TASK_NAMES[i])
            billable.append("true" if i < cat.N_BILLABLE_TASKS else "false")
    return pa.table(
        {"template_code": codes, "task_code": tasks, "task_name": names, "billable": billable}
    )


def deals_table(n: int, seed: int, as_of: date) -> pa.Table:
    """`n` deals as strings, exactly as a CRM export would hold them."""
    rng = np.random.default_rng(seed + 2101)
    entity = rng.choice(len(cat.ENTITIES), size=n, p=np.array(cat.ENTITY_WEIGHTS))
    stage = rng.choice(len(STAGES), size=n)
    template = rng.choice(len(TEMPLATES), size=n)
    budget = rng.integers(4, 200, size=n) * 10  # hours, whole tens
    rate = np.array([cat.BASE_RATES[e][1] for e in entity])  # a senior's base rate
    start = rng.integers(1, 60, size=n)
    weeks = rng.integers(4, 40, size=n)
    customer = rng.integers(1, max(2, n // 3) + 1, size=n)
    ids = [f"DL{i:05d}" for i in range(1, n + 1)]
    starts = [as_of + timedelta(days=int(d)) for d in start]
    won_stage = np.array([STAGES[s] == "won" for s in stage])
    return pa.table(
        {
            "deal_id": ids,
            "deal_name": [f"Deal {i}" for i in ids],
            "stage": [STAGES[s] for s in stage],
            "won_at": [f"{as_of.isoformat()}T09:00:00Z" if w else None for w in won_stage],
            "customer_id": [f"CRM{c:04d}" for c in customer],
            "customer_name": [f"Prospect {c:04d}" for c in customer],
            "legal_entity": [cat.ENTITIES[e] for e in entity],
            "currency": [cat.CURRENCIES[e] for e in entity],
            "billing_method": ["fixed_fee" if t == 1 else "time_and_materials" for t in template],
            "contract_value": [f"{b * r}.00" for b, r in zip(budget, rate, strict=True)],
            "budget_hours": [str(b) for b in budget],
            "start_date": [s.isoformat() for s in starts],
            "end_date": [
                (s + timedelta(weeks=int(w))).isoformat()
                for s, w in zip(starts, weeks, strict=True)
            ],
            "project_manager": [f"Manager {e + 1}" for e in entity],
            "template_code": [list(TEMPLATES)[t] for t in template],
            "updated_at": [f"{as_of.isoformat()}T09:00:00Z"] * n,
        }
    )
