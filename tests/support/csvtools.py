"""Small helpers to write canonical export files in tests."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path

from connectors.sources.canonical import DATASETS

TE_BASE: dict[str, str] = {
    "entry_id": "TE1",
    "employee_id": "E1",
    "employee_name": "Ann Lee",
    "project_code": "P1",
    "task_code": "T1",
    "work_date": "2026-11-02",
    "hours": "7.50",
    "billable": "true",
    "bill_rate": "150.00",
    "currency": "USD",
    "approval_status": "approved",
    "approved_at": "2026-11-03T09:00:00+01:00",
    "approved_by": "M1",
    "description": "Design review",
    "updated_at": "2026-11-03T09:00:00Z",
    "deleted": "false",
}


def te(**overrides: str) -> dict[str, str]:
    """A time-entry row: the base row with some values replaced."""
    return {**TE_BASE, **overrides}


def write_csv(
    path: Path,
    dataset: str,
    rows: Iterable[Mapping[str, object]],
    *,
    encoding: str = "utf-8",
    delimiter: str = ",",
) -> Path:
    rows = list(rows)
    ds = DATASETS[dataset]
    # The canonical layout, plus the vendor-mapping columns (approved_at_source...) rows use.
    extra = [c for c in ds.column_names if c not in ds.layout and any(c in r for r in rows)]
    cols = (*ds.layout, *extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in cols])
    return path
