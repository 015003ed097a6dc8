"""Retention: landed raw rows and report files past a configured age.

Landed raw rows (`land_*`) are the evidence of what a file said; once every row of a load
is versioned and judged, the versions, the quarantine (with its raw values) and the ledger
hold everything later steps read. A load is purged whole, only when:

- it landed before the cutoff and its landing rows are all there (count = rows read);
- none of its versions is current and still `pending` or `quarantined` (validation and the
  not-postable rule re-read their landing rows, and a quarantined row may be released);
- it is not the latest full export of time entries or newer (reconciliation reads those to
  find entries deleted in the PSA).

Each purged load leaves one row in `landing_purges` with its count, and conservation adds
those counts to the rows it finds, so "rows read = rows landed" keeps holding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from connectors.sources.canonical import DATASETS
from staging_models.db import StagingDB


@dataclass
class LandingPurge:
    cutoff: datetime
    loads: dict[str, int] = field(default_factory=dict)  # dataset -> loads purged
    rows: dict[str, int] = field(default_factory=dict)  # dataset -> raw rows deleted


def _purgeable_sql(dataset: str, keep_from: datetime | None) -> str:
    ds = DATASETS[dataset]
    keep = "AND d.started_at < :keep_from" if keep_from is not None else ""
    return f"""
        SELECT d.load_id, c.n FROM loads d
        JOIN (SELECT load_id, COUNT(*) AS n FROM {ds.landing_table} GROUP BY load_id) c
          ON c.load_id = d.load_id
        WHERE d.dataset = :ds AND d.status = 'landed' AND d.finished_at < :cutoff {keep}
          AND c.n = d.rows_read
          AND NOT EXISTS (SELECT 1 FROM landing_purges p WHERE p.load_id = d.load_id)
          AND NOT EXISTS (
              SELECT 1 FROM {ds.versions_table} s
              WHERE s.load_id = d.load_id AND s.is_current
                AND s.state IN ('pending', 'quarantined'))"""


def purge_landing(
    db: StagingDB,
    older_than_days: float,
    *,
    now: datetime | None = None,
    keep_time_entries_from: datetime | None = None,
    dry_run: bool = False,
) -> LandingPurge:
    """Delete the landed raw rows of settled loads older than `older_than_days`, one
    transaction per dataset; `keep_time_entries_from` protects time-entry loads started at
    or after it (the latest full export). Returns loads and rows per dataset."""
    now = now or datetime.now(UTC)
    out = LandingPurge(cutoff=now - timedelta(days=older_than_days))
    for name, ds in DATASETS.items():
        keep = keep_time_entries_from if name == "time_entries" else None
        params = {"ds": name, "cutoff": out.cutoff, "now": now, "keep_from": keep}
        with db.begin() as conn:
            found = conn.execute(sa.text(_purgeable_sql(name, keep)), params).fetchall()
            out.loads[name] = len(found)
            out.rows[name] = int(sum(n for _, n in found))
            if dry_run or not found:
                continue
            conn.execute(
                sa.text(
                    f"""INSERT INTO landing_purges (load_id, dataset, rows_purged, purged_at)
                        SELECT q.load_id, :ds, q.n, :now FROM ({_purgeable_sql(name, keep)}) q"""
                ),
                params,
            )
            conn.execute(
                sa.text(
                    f"""DELETE FROM {ds.landing_table} WHERE load_id IN (
                        SELECT load_id FROM landing_purges WHERE dataset = :ds)"""
                ),
                params,
            )
    return out


def purge_files(
    folder: Path, older_than_days: float, pattern: str = "*.xlsx", *, dry_run: bool = False
) -> list[Path]:
    """Delete files matching `pattern` directly in `folder` whose mtime is older than the age
    (workbooks, previews); returns what was (or, dry, would be) deleted."""
    if not folder.is_dir():
        return []
    cutoff = time.time() - older_than_days * 86400
    old = sorted(p for p in folder.glob(pattern) if p.is_file() and p.stat().st_mtime < cutoff)
    if not dry_run:
        for p in old:
            p.unlink(missing_ok=True)
    return old
