"""Pulling a vendor API into staging: a window of changes, one Parquet file, one load, and
only then the cursor.

Incremental pull (`time_entries`, hourly): the window runs from the cursor less the look-back
(`STAGEPOST_API_LOOKBACK_DAYS`, default 3, for entries edited back-dated or late) to the
moment the pull starts; a source with no cursor yet starts `initial_days` back. The records are
mapped to canonical text, written as `time_entries_api_<source>_<from>_<to>.parquet` and landed
by `landing.land_file` (versions, the loads ledger, conservation: exactly as a file). The
cursor moves to the window's end in its own transaction, after the load committed. A pull
killed before that leaves the cursor where it was: the next pull asks for the same changes
again, and versioning lands each entry once (an unchanged row is `unchanged`, identical bytes
are a `duplicate` load).

Full pull (`time_entries`, nightly, vendors that report no deletions): every entry dated in the
last `full_days` days, written as `time_entries_full_api_<source>_<from>_<to>.parquet` and
landed as a full export scoped to the source's own entries (`harvest:...`): entries it lacks
get tombstones, with the truncation guard of `staging_models.full_export`.

Its cursor row is `time_entries/full` (when the last full pull ran); it never moves the
incremental cursor.

Toggl, Kimai and Clockify are pulled for time entries only: their employees, projects and
tasks are derived from each landed window (`connectors.sources.api.derive`), as from a
vendor's export file.

Snapshot (master data, nightly): every record, landed as one file; versioning keeps only what
changed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from connectors.sources.api.derive import derive_format
from connectors.sources.api.vendor import ApiVendor
from connectors.sources.api.window import remove_partial, write_rows
from staging_models.api_cursor_tables import api_cursors
from staging_models.db import StagingDB, data_dir
from staging_models.full_export import DEFAULT_MAX_SHARE, FullExportPolicy
from staging_models.landing import LoadResult, land_file

log = logging.getLogger("stagepost.api")


def api_pulls_dir() -> Path:
    """Where each API source keeps the Parquet file of every window it landed (a folder per
    vendor): the pull's evidence, pruned by `STAGEPOST_RETENTION_API_PULL_DAYS`."""
    return data_dir() / "api_pulls"


@dataclass(frozen=True)
class PullSettings:
    """How far back a pull looks (days, whole or decimal)."""

    lookback: timedelta = timedelta(days=3)
    initial: timedelta = timedelta(days=30)
    full_days: int = 31
    max_delete_share: Decimal = DEFAULT_MAX_SHARE


@dataclass
class PullResult:
    """What one pull of one dataset did (the asset's metadata)."""

    source: str
    dataset: str
    mode: str  # incremental | full | snapshot
    window_from: str | None
    window_to: str | None
    records: int = 0
    requests: int = 0
    file_name: str | None = None
    cursor_before: str | None = None
    cursor_after: str | None = None
    load: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_cursor(db: StagingDB, source: str, dataset: str) -> datetime | None:
    """Where the last landed window of `source`/`dataset` ended (None: never pulled)."""
    value = db.scalar(
        "SELECT cursor_at FROM api_cursors WHERE source_name = :s AND dataset = :d",
        {"s": source, "d": dataset},
    )
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def advance_cursor(
    db: StagingDB,
    source: str,
    dataset: str,
    *,
    cursor_at: datetime,
    window: tuple[datetime | None, datetime | None],
    mode: str,
    records: int,
    load_id: str | None,
    file_name: str | None,
) -> None:
    """Record a landed window (one transaction; called only after its load committed). The
    cursor never moves back: a full pull or snapshot keeps a later incremental cursor."""
    now = datetime.now(UTC)
    values = {
        "window_from": window[0],
        "window_to": window[1],
        "mode": mode,
        "records": records,
        "load_id": load_id,
        "file_name": file_name,
        "updated_at": now,
    }
    with db.begin() as conn:
        current = conn.execute(
            sa.select(api_cursors.c.cursor_at).where(
                api_cursors.c.source_name == source, api_cursors.c.dataset == dataset
            )
        ).scalar_one_or_none()
        if current is None:
            conn.execute(
                api_cursors.insert().values(
                    source_name=source, dataset=dataset, cursor_at=cursor_at, **values
                )
            )
            return
        if current.tzinfo is None:
            current = current.replace(tzinfo=UTC)
        conn.execute(
            api_cursors.update()
            .where(api_cursors.c.source_name == source, api_cursors.c.dataset == dataset)
            .values(cursor_at=max(current, cursor_at), **values)
        )


def _stamp(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def pull(
    db: StagingDB,
    vendor: ApiVendor,
    dataset: str,
    *,
    source_name: str,
    folder: Path,
    settings: PullSettings = PullSettings(),
    full: bool = False,
    now: datetime | None = None,
) -> PullResult:
    """Pull one dataset of `vendor` and land it; see the module docstring for the modes.

    `folder` keeps the Parquet file of every landed window (the raw pull, for audits); a file
    of a window that did not land is removed. Vendor errors (`errors.py`) propagate with the
    cursor unmoved.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    folder.mkdir(parents=True, exist_ok=True)
    for name in remove_partial(folder):
        log.warning("removed %s, left by a pull that did not finish", name)
    # A full pull keeps its own row: it covers work dates, not changes, so it must never move
    # the incremental cursor (changes to older entries would be skipped).
    cursor_key = f"{dataset}/full" if full and dataset not in vendor.master else dataset
    before = read_cursor(db, source_name, cursor_key)
    requests_before = vendor.client.requests
    policy: FullExportPolicy | None = None
    window: tuple[datetime | None, datetime | None]
    if dataset in vendor.master:
        mode, window = "snapshot", (None, now)
        rows = vendor.snapshot(dataset)
        name = f"{dataset}_api_{source_name}_{_stamp(now)}.parquet"
    elif full:
        mode = "full"
        lo = (now - timedelta(days=settings.full_days)).date()
        hi = now.date()
        window = (datetime.combine(lo, datetime.min.time(), UTC), now)
        rows = vendor.dated(lo, hi)
        name = f"{dataset}_full_api_{source_name}_{lo}_{hi}_{_stamp(now)}.parquet"
        policy = FullExportPolicy(
            pattern=name,
            max_delete_share=settings.max_delete_share,
            key_prefix=vendor.key_prefix,
        )
    else:
        mode = "incremental"
        since = (before - settings.lookback) if before else (now - settings.initial)
        window = (since, now)
        rows = vendor.changed(since, now)
        name = f"{dataset}_api_{source_name}_{_stamp(since)}_{_stamp(now)}.parquet"
    result = PullResult(
        source_name,
        dataset,
        mode,
        window[0].isoformat() if window[0] else None,
        now.isoformat(),
        cursor_before=before.isoformat() if before else None,
    )
    path = folder / name
    result.records = write_rows(rows, dataset, path)
    result.requests = vendor.client.requests - requests_before
    load: LoadResult | None = None
    if result.records or mode != "incremental":
        try:
            load = land_file(
                db,
                path,
                dataset,
                source_name=source_name,
                file_name=name,
                workdir=folder / ".work",
                full_export=policy,
                # Employees, projects and tasks of vendors whose master data is not pulled,
                # derived from the entries in the same transaction.
                fmt=derive_format(vendor.defaults.legal_entity, vendor.defaults.currency)
                if dataset == "time_entries" and vendor.derives_master
                else None,
            )
        except Exception:
            os.unlink(path)  # recorded as failed in loads; the next pull writes it again
            raise
        result.file_name = name
        result.load = load.as_dict()
    else:
        os.unlink(path)  # nothing changed: no load, only the cursor moves
    advance_cursor(
        db,
        source_name,
        cursor_key,
        cursor_at=now,
        window=window,
        mode=mode,
        records=result.records,
        load_id=load.load_id if load else None,
        file_name=result.file_name,
    )
    result.cursor_after = now.isoformat()
    return result
