"""Landing PSA files in staging: every row read is kept, typed and versioned.

One file is one load and one transaction: the loads row, the landed rows and the
new versions commit together, so a crash lands nothing and the next run lands
the file once (a file whose checksum is already landed is skipped).

Versioning per key: content identical to the current version (hash over typed
values, minus `hash_exclude`) is a no-op; new content becomes version n+1 and the
current one; content older than the current version (`updated_at`) is stale and
only counted. Rows without a key still land, under a synthetic key, so the
contracts can quarantine them: nothing read is ever dropped.
"""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from connectors.sources.canonical import DATASETS, DECIMALS, Column, Dataset
from connectors.sources.formats import FileFormat, FileFormatError, close_raw, open_raw
from staging_models.db import StagingDB
from staging_models.tables import VERSIONS, loads

_TRUE = "('true','t','1','yes','y')"
#: The columns of a landing table that queries join or filter on (see `StagingDB.analyze`).
_LANDING_KEYS = "load_id, row_no, row_key, key_missing, content_hash"
_FALSE = "('false','f','0','no','n')"


class LandingError(Exception):
    """A file could not be landed; the message names the file and the reason."""


@dataclass
class LoadResult:
    dataset: str
    file_name: str
    checksum: str
    load_id: str | None = None
    status: str = "landed"  # landed | duplicate | failed
    rows_read: int = 0
    rows_new_version: int = 0
    rows_unchanged: int = 0
    rows_stale: int = 0
    message: str | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def file_checksum(path: Path) -> str:
    """sha256 of the file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def new_load_id(now: datetime | None = None) -> str:
    """Sortable and unique: `L20261122T031500-1a2b3c4d`."""
    now = now or datetime.now(UTC)
    return f"L{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


# -- typing (DuckDB SQL over the canonical text view) --------------------------------------


def _typed_expr(c: Column) -> str:
    """DuckDB expression turning the trimmed text `t_<name>` into the column's type, or NULL."""
    t = f"t_{c.name}"
    if c.type == "text":
        return t
    if c.type in DECIMALS:
        p, s = DECIMALS[c.type]
        # No silent rounding: more decimals than the column holds is a type error.
        pattern = rf"[+-]?([0-9]+(\.[0-9]{{0,{s}}})?|\.[0-9]{{1,{s}}})"
        return f"CASE WHEN regexp_full_match({t}, '{pattern}') THEN TRY_CAST({t} AS DECIMAL({p},{s})) END"
    if c.type == "date":
        return f"CASE WHEN regexp_full_match({t}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}') THEN TRY_CAST({t} AS DATE) END"
    if c.type == "timestamptz":
        # The canonical format requires an explicit UTC offset: a bare local time is ambiguous.
        return (
            f"CASE WHEN regexp_matches({t}, '(Z|z|[+-][0-9]{{2}}(:?[0-9]{{2}})?)$') "
            f"THEN TRY_CAST({t} AS TIMESTAMPTZ) END"
        )
    if c.type == "bool":
        return (
            f"CASE WHEN lower({t}) IN {_TRUE} THEN TRUE WHEN lower({t}) IN {_FALSE} THEN FALSE END"
        )
    if c.type == "int":
        return (
            f"CASE WHEN regexp_full_match({t}, '[+-]?[0-9]{{1,9}}') THEN CAST({t} AS INTEGER) END"
        )
    raise ValueError(c.type)


def typed_select_sql(ds: Dataset, view: str, load_id: str) -> tuple[list[str], str]:
    """Columns and DuckDB SELECT producing the landing rows of `view` (see `tables._landing_table`)."""
    trimmed = ", ".join(
        f"coalesce(NULLIF(trim({c.name}), ''), '{c.default}') AS t_{c.name}"
        if c.default is not None
        else f"NULLIF(trim({c.name}), '') AS t_{c.name}"
        for c in ds.columns
    )
    typed = ", ".join(f"{_typed_expr(c)} AS {c.name}" for c in ds.columns)
    raw_cols = [c for c in ds.columns if c.type != "text"]
    type_err = ", ".join(
        f"CASE WHEN t_{c.name} IS NOT NULL AND {c.name} IS NULL THEN '{c.name}' END"
        for c in raw_cols
    )
    hashed = ", ".join(
        f"coalesce(CAST({c.name} AS VARCHAR), chr(1) || t_{c.name}, chr(0))"
        for c in ds.columns
        if c.name not in ds.hash_exclude
    )
    strict_key = [k for k in ds.key if k not in ds.key_nullable]
    missing = " OR ".join(f"{k} IS NULL" for k in strict_key) or "FALSE"
    key_expr = " || '|' || ".join(f"coalesce(CAST({k} AS VARCHAR), '')" for k in ds.key)
    columns = ["load_id", "row_no", "row_key", "key_missing", "content_hash", "type_errors"]
    columns += list(ds.column_names) + [f"raw_{c.name}" for c in raw_cols]
    select = f"""
        WITH t AS (SELECT _row_no, {trimmed} FROM {view}),
             v AS (SELECT t.*, {typed} FROM t)
        SELECT '{load_id}' AS load_id, _row_no AS row_no,
               CASE WHEN {missing} THEN '~{load_id}:' || _row_no ELSE {key_expr} END AS row_key,
               ({missing}) AS key_missing,
               md5(concat_ws('|', {hashed})) AS content_hash,
               NULLIF(concat_ws(',', {type_err}), '') AS type_errors,
               {", ".join(ds.column_names)},
               {", ".join(f"t_{c.name}" for c in raw_cols)}
        FROM v
    """
    return columns, select


# -- versioning (portable SQL in the staging database) ------------------------------------


def _version_ctes(ds: Dataset) -> str:
    land, stg = ds.landing_table, ds.versions_table
    has_updated = "updated_at" in ds.column_names
    stale = (
        "c.updated_at IS NOT NULL AND f.updated_at IS NOT NULL AND f.updated_at < c.updated_at"
        if has_updated
        else "FALSE"
    )
    order = "f.updated_at NULLS FIRST, f.row_no" if has_updated else "f.row_no"
    return f"""
        WITH cur AS (
            SELECT s.row_key, s.version, s.content_hash{", s.updated_at" if has_updated else ""}
            FROM {stg} s
            WHERE s.is_current AND s.row_key IN (SELECT row_key FROM {land} WHERE load_id = :load_id)
        ),
        firsts AS (
            SELECT l.*, ROW_NUMBER() OVER (PARTITION BY l.row_key, l.content_hash ORDER BY l.row_no) AS dup_rank
            FROM {land} l WHERE l.load_id = :load_id
        ),
        judged AS (
            SELECT f.*, c.version AS cur_version,
                   CASE WHEN f.dup_rank > 1 OR c.content_hash = f.content_hash THEN 'unchanged'
                        WHEN {stale} THEN 'stale'
                        ELSE 'new' END AS disposition,
                   ROW_NUMBER() OVER (PARTITION BY f.row_key ORDER BY {order}) AS seq
            FROM firsts f LEFT JOIN cur c ON c.row_key = f.row_key
        )
    """


def _apply_versions(db: StagingDB, conn: Connection, ds: Dataset, load_id: str) -> dict[str, int]:
    """Judge every landed row of the load once (temp table), then insert the new versions."""
    stg = VERSIONS[ds.name]
    cols = ", ".join(ds.column_names)
    judged = f"judged_{ds.name}"
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {judged}")
    conn.execute(
        sa.text(
            f"""CREATE TEMP TABLE {judged} AS {_version_ctes(ds)}
                SELECT row_no, row_key, cur_version, disposition, seq FROM judged"""
        ),
        {"load_id": load_id},
    )
    # Read three times below, and autovacuum never analyzes temporary tables.
    db.analyze(conn, f"{judged} (row_no, row_key, disposition)")
    counts = dict(
        conn.execute(
            sa.text(f"SELECT disposition, COUNT(*) FROM {judged} GROUP BY disposition")
        ).fetchall()
    )
    if counts.get("new"):
        conn.execute(
            sa.text(
                f"""INSERT INTO {stg.name}
                    (row_key, version, load_id, row_no, key_missing, content_hash, type_errors,
                     {cols}, is_current, state, landed_at)
                    WITH fresh AS (
                        SELECT j.row_no, j.row_key,
                               COALESCE(j.cur_version, 0)
                                 + ROW_NUMBER() OVER (PARTITION BY j.row_key ORDER BY j.seq)
                                 AS new_version,
                               ROW_NUMBER() OVER (PARTITION BY j.row_key ORDER BY j.seq DESC)
                                 AS from_last
                        FROM {judged} j WHERE j.disposition = 'new'
                    )
                    SELECT f.row_key, f.new_version, l.load_id, l.row_no, l.key_missing,
                           l.content_hash, l.type_errors, {", ".join(f"l.{c}" for c in ds.column_names)},
                           f.from_last = 1, 'pending', :now
                    FROM fresh f
                    JOIN {ds.landing_table} l ON l.load_id = :load_id AND l.row_no = f.row_no"""
            ),
            {"load_id": load_id, "now": datetime.now(UTC)},
        )
        # The previous current versions of keys that got a new one step down.
        conn.execute(
            sa.text(
                f"""UPDATE {stg.name} SET is_current = FALSE
                    WHERE is_current AND load_id <> :load_id
                      AND row_key IN (SELECT row_key FROM {stg.name} WHERE load_id = :load_id)"""
            ),
            {"load_id": load_id},
        )
    conn.exec_driver_sql(f"DROP TABLE {judged}")
    return {
        "rows_new_version": int(counts.get("new", 0)),
        "rows_unchanged": int(counts.get("unchanged", 0)),
        "rows_stale": int(counts.get("stale", 0)),
    }


# -- one file ----------------------------------------------------------------------------


def already_landed(db: StagingDB, dataset: str, checksum: str) -> str | None:
    """The load id that already landed these exact bytes for this dataset, if any."""
    return db.scalar(
        "SELECT load_id FROM loads WHERE dataset = :d AND checksum = :c AND status = 'landed'",
        {"d": dataset, "c": checksum},
    )


def land_file(
    db: StagingDB,
    path: Path,
    dataset: str,
    *,
    source_name: str = "local",
    file_name: str | None = None,
    fmt: FileFormat | None = None,
    workdir: Path | None = None,
) -> LoadResult:
    """Land one file as one load. Idempotent on the file's bytes; raises `LandingError` on a bad file
    after recording the failure in `loads` (a failed file can be fixed and landed later)."""
    ds = DATASETS[dataset]
    file_name = file_name or path.name
    checksum = file_checksum(path)
    result = LoadResult(dataset, file_name, checksum)
    previous = already_landed(db, dataset, checksum)
    if previous:
        result.status, result.load_id = "duplicate", previous
        result.message = f"identical to load {previous}; nothing changed"
        return result
    load_id = result.load_id = new_load_id()
    started = datetime.now(UTC)
    base = {
        "load_id": load_id,
        "dataset": dataset,
        "source_name": source_name,
        "file_name": file_name,
        "checksum": checksum,
        "size_bytes": path.stat().st_size,
        "started_at": started,
    }
    workdir = workdir or path.parent / ".stagepost-work"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        # Scratch space of this load (a transcoded copy of a legacy-encoded file), removed
        # whatever happens: a 1 GB export must not leave a 1 GB copy behind.
        with db.begin() as conn, tempfile.TemporaryDirectory(dir=workdir, prefix=".load-") as tmp:
            with db.duck(conn) as duck:
                view = open_raw(
                    duck, path, ds, fmt or FileFormat(), workdir=Path(tmp), view=f"raw_{dataset}"
                )
                columns, select = typed_select_sql(ds, view, load_id)
                db.insert_select(conn, duck, ds.landing_table, columns, select)
                close_raw(duck, view)
            # Versioning reads the rows just copied in: plan it on statistics that know them
            # (of the columns anything joins or filters landing rows on; raw text is only read).
            db.analyze(conn, f"{ds.landing_table} ({_LANDING_KEYS})")
            counts = _apply_versions(db, conn, ds, load_id)
            result.rows_read = sum(counts.values())  # every landed row has one disposition
            for k, v in counts.items():
                setattr(result, k, v)
            conn.execute(
                loads.insert().values(
                    **base,
                    status="landed",
                    rows_read=result.rows_read,
                    finished_at=datetime.now(UTC),
                    **counts,
                )
            )
            # What the load wrote, analyzed before it commits: validation, the next step,
            # reads these tables at once, and autovacuum may come late or not at all.
            db.analyze(conn, ds.versions_table, "loads")
    except Exception as e:  # recorded, then re-raised: a failed load is never silent
        message = str(e) if isinstance(e, FileFormatError) else f"{file_name}: {e}"
        with db.begin() as conn:
            conn.execute(
                loads.insert().values(
                    **base, status="failed", finished_at=datetime.now(UTC), message=message[:4000]
                )
            )
        raise LandingError(message) from e
    return result


# -- a whole source ------------------------------------------------------------------------


@dataclass
class IngestReport:
    """What one ingestion pass did with one dataset's files."""

    dataset: str
    results: list[LoadResult] = field(default_factory=list)
    failures: list[LoadResult] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        landed = [r for r in self.results if r.status == "landed"]
        return {
            "files_landed": len(landed),
            "files_already_landed": sum(r.status == "duplicate" for r in self.results),
            "files_failed": len(self.failures),
            "rows_read": sum(r.rows_read for r in landed),
            "rows_new_version": sum(r.rows_new_version for r in landed),
            "rows_unchanged": sum(r.rows_unchanged for r in landed),
            "rows_stale": sum(r.rows_stale for r in landed),
        }


def ingest_dataset(
    db: StagingDB,
    source,  # connectors.sources.base.FileSource
    dataset: str,
    *,
    fmt: FileFormat | None = None,
    workdir: Path,
    log=None,
    only: str | None = None,
) -> IngestReport:
    """Land every complete file of `dataset` in the source (or just the one named `only`),
    then archive it.

    Archiving happens only after the load committed; a crash in between leaves the
    file in the inbox, and the next pass finds its checksum landed and only archives it.
    A bad file, or one whose download failed, is recorded as failed and left in place;
    the others still land.
    """
    from connectors.sources.base import SourceError, dataset_of

    report = IngestReport(dataset)
    files = [
        f
        for f in source.list_complete()
        if dataset_of(f.name) == dataset and (only is None or f.name == only)
    ]
    if only is not None and not files and log:
        log.info(f"{only}: not (or no longer) in {source.describe()}; nothing to land")
    for f in files:
        try:
            local = source.fetch(f, workdir)
        except SourceError as e:  # retryable or not, the next pass tries again
            report.failures.append(
                LoadResult(dataset, f.name, "", status="failed", message=f"{f.name}: {e}")
            )
            if log:
                log.error(f"{f.name}: not fetched: {e}")
            continue
        try:
            result = land_file(
                db,
                local,
                dataset,
                source_name=source.name,
                file_name=f.name,
                fmt=fmt,
                workdir=workdir,
            )
        except LandingError as e:
            failed = LoadResult(dataset, f.name, "", status="failed", message=str(e))
            report.failures.append(failed)
            if log:
                log.error(f"{f.name}: not landed: {e}")
            continue
        finally:
            if local.parent == workdir and local.exists():
                local.unlink()  # a fetched copy; the source keeps the original until archived
        source.archive(f)
        report.results.append(result)
        if log:
            log.info(
                f"{f.name}: {result.status}, {result.rows_read} rows read, "
                f"{result.rows_new_version} new versions"
            )
    return report
