"""Deletions no PSA announces: entries absent from a complete full export become tombstones.

Most PSA exports and APIs carry no deletion events: a hard-deleted entry just stops
appearing, and an incremental feed can never show it. A *full export* (a time-entry file
whose name matches `STAGEPOST_FULL_EXPORT_PATTERN`) is a complete snapshot of its scope:
time entries dated in its range. The range is declared by the file name
(`time_entries_full_2026-11-01_2026-11-30.csv`), else by `STAGEPOST_FULL_EXPORT_RANGE`,
else it is the span of the file's own work dates. Entries outside it are never judged.

When the file lands (same transaction), every current, live entry dated in the range that
the file lacks has *vanished*: it gets a tombstone version (`deleted`, so the contracts make
it `not_postable` and the next posting window reverses a posted line). The tombstones are
the rows of a derived load (source `vanished_from_full_export`), so versions and the
conservation check account for them like any other. An entry whose current version is newer
(`updated_at`) than everything in the export may postdate the snapshot: it is not judged.

A truncated export must not delete half the ledger: if the vanished share of the scope is
above `STAGEPOST_FULL_EXPORT_MAX_DELETE_SHARE` (default 0.05), nothing is tombstoned, the
export is `held` (a warning check names it), and an operator applies or dismisses it with
`confirm_full_export_job` (audited in `full_export_events`). A later full export supersedes
a held one.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from config.full_export_range import FullExportError, parse_range, range_in_name
from connectors.sources.canonical import DATASETS
from connectors.sql import read_frame
from staging_models.db import StagingDB
from staging_models.full_export_tables import full_export_events, full_exports
from staging_models.tables import loads
from staging_models.versions import apply_versions, new_load_id

#: Why a tombstone of this kind exists: the source name of its derived load.
REASON = "vanished_from_full_export"
DEFAULT_MAX_SHARE = Decimal("0.05")


@dataclass(frozen=True)
class FullExportPolicy:
    """Which time-entry files are full exports, what they cover, and the truncation guard."""

    pattern: str
    date_range: tuple[date, date] | None = None
    max_delete_share: Decimal = DEFAULT_MAX_SHARE
    #: Only entries whose key starts with this are judged (an API source's full pull judges
    #: its own entries, `harvest:...`, never another source's); empty: every entry.
    key_prefix: str = ""

    def __post_init__(self) -> None:
        if not Decimal(0) <= self.max_delete_share <= Decimal(1):
            raise FullExportError(
                f"full export max delete share {self.max_delete_share} is not between 0 and 1"
            )

    def matches(self, dataset: str, file_name: str) -> bool:
        return dataset == "time_entries" and fnmatch.fnmatchcase(file_name, self.pattern)

    @classmethod
    def from_settings(
        cls, pattern: str, date_range: str = "", max_delete_share: str = ""
    ) -> FullExportPolicy | None:
        """From the setting strings (empty pattern: no full exports, nothing is judged)."""
        if not pattern.strip():
            return None
        try:
            share = Decimal(max_delete_share.strip() or DEFAULT_MAX_SHARE)
        except InvalidOperation:
            raise FullExportError(
                f"full export max delete share {max_delete_share!r} is not a number"
            ) from None
        return cls(pattern.strip(), parse_range(date_range) if date_range.strip() else None, share)


@dataclass
class FullExportResult:
    """What judging (or deciding on) one full export did."""

    load_id: str
    file_name: str
    status: str
    date_from: date | None = None
    date_to: date | None = None
    range_source: str = "none"
    scope_entries: int = 0
    vanished_entries: int = 0
    tombstoned_entries: int = 0
    skipped_entries: int = 0
    max_share: str = str(DEFAULT_MAX_SHARE)
    tombstone_load_id: str | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["date_from"] = self.date_from.isoformat() if self.date_from else None
        d["date_to"] = self.date_to.isoformat() if self.date_to else None
        return d

    def share(self) -> str:
        """Vanished share of the scope as an exact percentage string."""
        if not self.scope_entries:
            return "0%"
        pct = Decimal(100 * self.vanished_entries) / Decimal(self.scope_entries)
        return f"{pct.quantize(Decimal('0.1'))}%"

    def describe(self) -> str:
        what = (
            f"{self.file_name}: {self.vanished_entries} of {self.scope_entries} entries dated "
            f"{self.date_from} to {self.date_to} are missing ({self.share()})"
        )
        if self.status == "held":
            return (
                f"{what}, more than the allowed share {self.max_share}: nothing tombstoned; "
                f"confirm with confirm_full_export_job (load {self.load_id}) or dismiss it"
            )
        return f"{what}; {self.tombstoned_entries} tombstoned ({self.status})"


# -- SQL ------------------------------------------------------------------------------------

_LIVE = """s.is_current AND NOT s.key_missing AND COALESCE(s.deleted, FALSE) = FALSE
           AND s.work_date BETWEEN :lo AND :hi
           AND substr(s.row_key, 1, length(CAST(:prefix AS TEXT))) = CAST(:prefix AS TEXT)"""
# Absent from the export; and not newer than everything in it (it may postdate the snapshot).
_VANISHED = f"""SELECT s.row_key, s.version FROM stg_time_entries s
    WHERE {_LIVE}
      AND NOT EXISTS (SELECT 1 FROM land_time_entries l
                      WHERE l.load_id = :load_id AND l.row_key = s.row_key)
      AND COALESCE(s.updated_at <= (SELECT MAX(f.updated_at) FROM land_time_entries f
                                    WHERE f.load_id = :load_id), TRUE)"""


def _exec(conn: Connection, sql: str, **params) -> int:
    return conn.execute(sa.text(sql), params).rowcount


def _event(conn: Connection, r: FullExportResult, event: str, now, actor, reason) -> None:
    conn.execute(
        full_export_events.insert().values(
            load_id=r.load_id,
            file_name=r.file_name,
            event=event,
            event_at=now,
            actor=actor,
            reason=reason,
            vanished_entries=r.vanished_entries,
            tombstoned_entries=r.tombstoned_entries,
        )
    )


def _tombstone(conn: Connection, r: FullExportResult, keys: str, now: datetime) -> tuple[str, int]:
    """Tombstone versions of the entries in temp table `keys` (row_key, version), as the rows
    of one derived load: a copy of the current version with `deleted` set."""
    ds = DATASETS["time_entries"]
    tomb = new_load_id(now)
    raw = [c.name for c in ds.columns if c.type != "text"]
    cols = ["load_id", "row_no", "row_key", "key_missing", "content_hash", "type_errors"]
    cols += list(ds.column_names) + [f"raw_{c}" for c in raw]
    values = [
        ":tomb",
        "ROW_NUMBER() OVER (ORDER BY s.row_key)",
        "s.row_key",
        "FALSE",
        f"md5(s.content_hash || '|{REASON}')",
        "s.type_errors",
    ]
    values += ["TRUE" if c == "deleted" else f"s.{c}" for c in ds.column_names]
    values += ["'true'" if c == "deleted" else f"l.raw_{c}" for c in raw]
    n = _exec(
        conn,
        f"""INSERT INTO {ds.landing_table} ({", ".join(cols)})
            SELECT {", ".join(values)}
            FROM {keys} k
            JOIN stg_time_entries s ON s.row_key = k.row_key AND s.version = k.version
            JOIN {ds.landing_table} l ON l.load_id = s.load_id AND l.row_no = s.row_no""",
        tomb=tomb,
    )
    counts = apply_versions(conn, ds, tomb)
    conn.execute(
        loads.insert().values(
            load_id=tomb,
            dataset="time_entries",
            source_name=REASON,
            file_name=r.file_name,
            checksum=f"{REASON}:{r.load_id}",
            size_bytes=0,
            status="landed",
            rows_read=n,
            started_at=now,
            finished_at=now,
            message=f"tombstones of the entries missing from full export load {r.load_id}",
            **counts,
        )
    )
    return tomb, counts["rows_new_version"]


def _supersede_held(conn: Connection, load_id: str, file_name: str, now, actor: str) -> None:
    """A later full export settles what an earlier, held one would have decided."""
    waiting = read_frame(
        conn,
        "SELECT load_id, file_name FROM full_exports WHERE status = 'held' AND load_id <> :l",
        {"l": load_id},
    )
    for old in waiting.itertuples(index=False):
        _event(
            conn,
            FullExportResult(old.load_id, old.file_name, "superseded"),
            "superseded",
            now,
            actor,
            f"a later full export ({file_name}, load {load_id}) was judged",
        )
    if len(waiting):
        _exec(conn, "UPDATE full_exports SET status = 'superseded' WHERE status = 'held'")
        _exec(conn, "UPDATE full_export_vanished SET status = 'dismissed' WHERE status = 'held'")


def judge(
    conn: Connection,
    load_id: str,
    file_name: str,
    policy: FullExportPolicy,
    *,
    now: datetime | None = None,
    actor: str = "stagepost",
) -> FullExportResult:
    """Judge the just-landed full export `load_id` inside the landing transaction `conn`."""
    now = now or datetime.now(UTC)
    r = FullExportResult(load_id, file_name, "no_range", max_share=str(policy.max_delete_share))
    declared = range_in_name(file_name)
    if declared:
        r.range_source, (r.date_from, r.date_to) = "file_name", declared
    elif policy.date_range:
        r.range_source, (r.date_from, r.date_to) = "setting", policy.date_range
    else:
        lo, hi = conn.execute(
            sa.text(
                "SELECT MIN(work_date), MAX(work_date) FROM land_time_entries WHERE load_id = :l"
            ),
            {"l": load_id},
        ).one()
        if lo is not None:
            r.range_source, r.date_from, r.date_to = "rows", lo, hi
    if r.date_from is not None:
        _supersede_held(conn, load_id, file_name, now, actor)
        p = {"lo": r.date_from, "hi": r.date_to, "load_id": load_id}
        p["prefix"] = policy.key_prefix
        r.scope_entries = conn.execute(
            sa.text(f"SELECT COUNT(*) FROM stg_time_entries s WHERE {_LIVE}"), p
        ).scalar_one()
        conn.exec_driver_sql("DROP TABLE IF EXISTS fx_keys")
        conn.execute(sa.text(f"CREATE TEMP TABLE fx_keys AS {_VANISHED}"), p)
        r.vanished_entries = conn.execute(sa.text("SELECT COUNT(*) FROM fx_keys")).scalar_one()
        too_many = Decimal(r.vanished_entries) > policy.max_delete_share * r.scope_entries
        if not r.vanished_entries:
            r.status = "complete"
        elif too_many:
            r.status = "held"
            _exec(
                conn,
                """INSERT INTO full_export_vanished (load_id, row_key, version, status)
                   SELECT :l, row_key, version, 'held' FROM fx_keys""",
                l=load_id,
            )
            _event(conn, r, "held", now, actor, r.describe())
        else:
            r.tombstone_load_id, r.tombstoned_entries = _tombstone(conn, r, "fx_keys", now)
            _record_tombstones(conn, r, "fx_keys", insert=True)
            r.status = "applied"
            _event(conn, r, "applied", now, actor, r.describe())
        conn.exec_driver_sql("DROP TABLE fx_keys")
    conn.execute(
        full_exports.insert().values(
            load_id=load_id,
            file_name=file_name,
            date_from=r.date_from,
            date_to=r.date_to,
            range_source=r.range_source,
            scope_entries=r.scope_entries,
            vanished_entries=r.vanished_entries,
            tombstoned_entries=r.tombstoned_entries,
            max_share=r.max_share,
            status=r.status,
            tombstone_load_id=r.tombstone_load_id,
            judged_at=now,
        )
    )
    return r


def _record_tombstones(conn: Connection, r: FullExportResult, keys: str, *, insert: bool) -> None:
    tomb_version = """(SELECT t.version FROM stg_time_entries t
                       WHERE t.row_key = {k}.row_key AND t.load_id = :tomb)"""
    if insert:
        _exec(
            conn,
            f"""INSERT INTO full_export_vanished (load_id, row_key, version, tombstone_version, status)
                SELECT :l, k.row_key, k.version, {tomb_version.format(k="k")}, 'tombstoned'
                FROM {keys} k""",
            l=r.load_id,
            tomb=r.tombstone_load_id,
        )
        return
    _exec(
        conn,
        f"""UPDATE full_export_vanished SET status = 'tombstoned',
                   tombstone_version = {tomb_version.format(k="full_export_vanished")}
            WHERE load_id = :l AND status = 'held'
              AND row_key IN (SELECT row_key FROM {keys})""",
        l=r.load_id,
        tomb=r.tombstone_load_id,
    )


# -- operator decision ---------------------------------------------------------------------


def _find(conn: Connection, ref: str) -> pd.Series:
    rows = read_frame(
        conn,
        """SELECT f.*, l.started_at FROM full_exports f JOIN loads l ON l.load_id = f.load_id
           WHERE f.load_id = :r OR f.file_name = :r ORDER BY l.started_at DESC""",
        {"r": ref.strip()},
    )
    if rows.empty:
        raise FullExportError(f"no judged full export with load id or file name {ref!r}")
    return rows.iloc[0]


# Held entries still as they were judged: same current version, live, and not delivered by
# any file landed after the export (a later file proves the entry exists).
_STILL_VANISHED = """SELECT v.row_key, v.version FROM full_export_vanished v
    JOIN stg_time_entries s ON s.row_key = v.row_key AND s.version = v.version
         AND s.is_current AND COALESCE(s.deleted, FALSE) = FALSE
    WHERE v.load_id = :l AND v.status = 'held'
      AND NOT EXISTS (
          SELECT 1 FROM land_time_entries x JOIN loads d ON d.load_id = x.load_id
          WHERE x.row_key = v.row_key AND d.status = 'landed' AND d.source_name <> :derived
            AND d.started_at > (SELECT started_at FROM loads WHERE load_id = :l))"""


def decide(
    db: StagingDB,
    full_export: str,
    *,
    operator: str,
    reason: str,
    action: str = "apply",
    now: datetime | None = None,
    run_id: str | None = None,
) -> FullExportResult:
    """An operator's decision on a held full export (load id or file name): `apply` its
    tombstones (entries changed or delivered again since are skipped) or `dismiss` them."""
    if not operator.strip():
        raise FullExportError("a full-export decision needs the operator's name")
    if not reason.strip():
        raise FullExportError("a full-export decision needs a reason")
    if action not in ("apply", "dismiss"):
        raise FullExportError(f"action {action!r}: use 'apply' or 'dismiss'")
    now = now or datetime.now(UTC)
    actor = operator.strip() + (f" (run {run_id})" if run_id else "")
    with db.begin() as conn:
        f = _find(conn, full_export)
        r = FullExportResult(
            f["load_id"],
            f["file_name"],
            f["status"],
            f["date_from"],
            f["date_to"],
            f["range_source"],
            int(f["scope_entries"]),
            int(f["vanished_entries"]),
            max_share=f["max_share"],
        )
        if r.status != "held":
            raise FullExportError(
                f"full export {r.file_name} (load {r.load_id}) is {r.status}, not held: "
                "nothing to decide"
            )
        if action == "dismiss":
            r.status = "dismissed"
            _exec(
                conn,
                "UPDATE full_export_vanished SET status = 'dismissed' WHERE load_id = :l",
                l=r.load_id,
            )
        else:
            r.status = "confirmed"
            conn.exec_driver_sql("DROP TABLE IF EXISTS fx_keys")
            conn.execute(
                sa.text(f"CREATE TEMP TABLE fx_keys AS {_STILL_VANISHED}"),
                {"l": r.load_id, "derived": REASON},
            )
            if conn.execute(sa.text("SELECT COUNT(*) FROM fx_keys")).scalar_one():
                r.tombstone_load_id, r.tombstoned_entries = _tombstone(conn, r, "fx_keys", now)
                _record_tombstones(conn, r, "fx_keys", insert=False)
            conn.exec_driver_sql("DROP TABLE fx_keys")
            r.skipped_entries = _exec(
                conn,
                """UPDATE full_export_vanished SET status = 'skipped'
                   WHERE load_id = :l AND status = 'held'""",
                l=r.load_id,
            )
        _exec(
            conn,
            """UPDATE full_exports SET status = :s, tombstone_load_id = :t,
                      tombstoned_entries = :n, decided_at = :now, decided_by = :by,
                      decision_reason = :why
               WHERE load_id = :l""",
            s=r.status,
            t=r.tombstone_load_id,
            n=r.tombstoned_entries,
            now=now,
            by=actor,
            why=reason,
            l=r.load_id,
        )
        _event(conn, r, r.status, now, actor, reason)
    return r


def held(db: StagingDB) -> pd.DataFrame:
    """Full exports waiting for an operator: load, file, range, scope and vanished counts."""
    return db.query_df(
        """SELECT load_id, file_name, date_from, date_to, scope_entries, vanished_entries,
                  max_share, judged_at
           FROM full_exports WHERE status = 'held' ORDER BY judged_at, load_id"""
    )
