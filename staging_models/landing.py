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
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from connectors.sources.base import display_name, safe_local_name
from connectors.sources.canonical import DATASETS, DECIMALS, Column, Dataset
from connectors.sources.formats import FileFormat, FileFormatError, close_raw, open_raw
from staging_models.db import StagingDB
from staging_models.derived import land_derived
from staging_models.full_export import FullExportPolicy, judge
from staging_models.scratch import clean_dead_scratch, scratch_dir
from staging_models.tables import VERSIONS, loads
from staging_models.versions import apply_versions, new_load_id

_TRUE = "('true','t','1','yes','y')"
#: The columns of a landing table that queries join or filter on (see `StagingDB.analyze`).
_LANDING_KEYS = "load_id, row_no, row_key, key_missing, content_hash"
_FALSE = "('false','f','0','no','n')"


class LandingError(Exception):
    """A file could not be landed; the message names the file and the reason."""


class FileRefused(LandingError):
    """The file itself cannot be landed as it is (its format, columns or name): recorded as
    `refused` and set aside; retrying cannot help until someone fixes the file."""


class FileChanged(LandingError):
    """The file changed between its listing and the commit (still being written): nothing
    was landed or recorded; it waits for the next run."""


#: Errors that say the file's content cannot be read as the dataset. Anything else (the
#: staging database down, a full disk) leaves the file in the inbox as `failed`, for a retry.
_CONTENT_ERRORS = (
    FileFormatError,
    UnicodeError,
    duckdb.InvalidInputException,
    duckdb.ConversionException,
)


def is_refusal(exc: BaseException) -> bool:
    """Whether a landing error is about the file itself (refuse it) rather than the system."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:  # SQLAlchemy wraps the driver's error
        if isinstance(e, _CONTENT_ERRORS):
            return True
        seen.add(id(e))
        e = e.__cause__ or getattr(e, "orig", None)
    return False


@dataclass
class LoadResult:
    dataset: str
    file_name: str
    checksum: str
    load_id: str | None = None
    status: str = "landed"  # landed | duplicate | failed | refused | waiting
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


def _hashed_expr(ds: Dataset, c: Column) -> str:
    """A column's part of the content hash (NULL parts are skipped by concat_ws)."""
    value = f"coalesce(CAST({c.name} AS VARCHAR), chr(1) || t_{c.name}"
    if c.hash_when_set:
        expr = f"'{c.name}=' || {value})"
    else:
        expr = f"{value}, chr(0))"
    if c.hash_when_set:
        expr = f"CASE WHEN t_{c.name} IS NOT NULL THEN {expr} END"
    unless = ds.hash_unless.get(c.name)
    if unless:
        expr = f"CASE WHEN t_{unless} IS NULL THEN {expr} END"
    return expr


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
    hashed = ", ".join(_hashed_expr(ds, c) for c in ds.columns if c.name not in ds.hash_exclude)
    strict_key = [k for k in ds.key if k not in ds.key_nullable]
    missing = " OR ".join(f"{k} IS NULL" for k in strict_key) or "FALSE"
    key_expr = " || '|' || ".join(f"coalesce(CAST({k} AS VARCHAR), '')" for k in ds.key)
    columns = ["load_id", "row_no", "row_key", "key_missing", "content_hash", "type_errors"]
    columns += list(ds.column_names) + [f"raw_{c.name}" for c in raw_cols]
    # md5, not DuckDB's cheaper hash() (0.5 s of CPU less per 1M rows): stored hashes are
    # compared with new ones on every later load, so the function and its input never change
    # without a migration rehashing every version (else every row would be a new version).
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


# -- one file ----------------------------------------------------------------------------


def already_landed(db: StagingDB, dataset: str, checksum: str) -> str | None:
    """The load id that already landed these exact bytes for this dataset, if any."""
    return db.scalar(
        "SELECT load_id FROM loads WHERE dataset = :d AND checksum = :c AND status = 'landed'",
        {"d": dataset, "c": checksum},
    )


def _record(db: StagingDB, base: dict, status: str, message: str) -> None:
    """A loads row for a file that did not land (its own transaction: never lost with the load)."""
    with db.begin() as conn:
        conn.execute(
            loads.insert().values(
                **base, status=status, finished_at=datetime.now(UTC), message=message[:4000]
            )
        )


def _readable_alias(path: Path, scratch: Path) -> Path:
    """A path DuckDB reads as exactly this file.

    DuckDB treats `*`, `?` and `[` in a path as a glob: `time_entries_*.csv` would read every
    time-entry file in the folder. Such names (and any other unusual one) are read through a
    symbolic link with a plain name in the scratch folder.
    """
    plain = safe_local_name(path.name)
    if plain == path.name:
        return path
    alias = scratch / plain
    os.symlink(path.resolve(), alias)
    return alias


def land_file(
    db: StagingDB,
    path: Path,
    dataset: str,
    *,
    source_name: str = "local",
    file_name: str | None = None,
    fmt: FileFormat | None = None,
    workdir: Path | None = None,
    full_export: FullExportPolicy | None = None,
    unchanged: Callable[[], bool] | None = None,
) -> LoadResult:
    """Land one file as one load. Idempotent on the file's bytes.

    A file whose content cannot be landed raises `FileRefused` after recording it `refused`
    in `loads`; any other failure raises `LandingError` after recording it `failed`. With
    `unchanged` (the source's check that the file is still what was listed), a file that
    changed before the commit raises `FileChanged` and nothing is recorded.

    A file that `full_export` matches is a complete snapshot of its range: entries it lacks
    get tombstones in the same transaction (see `staging_models.full_export`).
    """
    ds = DATASETS[dataset]
    file_name = display_name(file_name or path.name)
    workdir = workdir or path.parent / ".stagepost-work"
    clean_dead_scratch(workdir)  # what killed landings left behind
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
    try:
        # Scratch space of this load (a transcoded copy of a legacy-encoded file), removed
        # whatever happens: a 1 GB export must not leave a 1 GB copy behind.
        with db.begin() as conn, scratch_dir(workdir) as tmp:
            with db.duck(conn) as duck:
                readable = _readable_alias(path, tmp)
                view = open_raw(
                    duck,
                    readable,
                    ds,
                    fmt or FileFormat(),
                    workdir=tmp,
                    view=f"raw_{dataset}",
                    file_name=file_name,
                )
                columns, select = typed_select_sql(ds, view, load_id)
                db.insert_select(conn, duck, ds.landing_table, columns, select)
                close_raw(duck, view)
                if dataset == "time_entries" and fmt is not None:
                    # Master data the mapping derives from this export: its own loads, in
                    # this transaction (a file of master data wins over what is derived).
                    derived = land_derived(
                        db,
                        conn,
                        duck,
                        readable,
                        file_name=file_name,
                        fmt=fmt,
                        base=base,
                        workdir=tmp,
                    )
                    if derived:
                        result.extra["derived"] = derived
            # Versioning reads the rows just copied in: plan it on statistics that know them
            # (of the columns anything joins or filters landing rows on; raw text is only read).
            db.analyze(conn, f"{ds.landing_table} ({_LANDING_KEYS})")
            counts = apply_versions(conn, ds, load_id)
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
            if full_export is not None and full_export.matches(dataset, file_name):
                judged = judge(conn, load_id, file_name, full_export, actor=source_name)
                result.extra["full_export"] = judged.as_dict()
                result.message = judged.describe()
            # What the load wrote, analyzed before it commits: validation, the next step,
            # reads these tables at once, and autovacuum may come late or not at all.
            db.analyze(conn, ds.versions_table, "loads")
            if unchanged is not None and not unchanged():  # rolls the whole load back
                raise FileChanged(
                    f"{file_name}: changed while it was being landed (still being written?); "
                    "nothing landed, it waits for the next run"
                )
    except FileChanged:
        raise
    except Exception as e:  # recorded, then re-raised: a failed load is never silent
        # Text the database can store: bytes of a name that is not UTF-8 as \xNN.
        message = str(e).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        for local in (display_name(path.name), safe_local_name(path.name)):
            if message.startswith(f"{local}:"):  # the file's name, not a local copy or alias
                message = file_name + message[len(local) :]
                break
        if not message.startswith(f"{file_name}:"):
            message = f"{file_name}: {message}"
        refused = is_refusal(e)
        _record(db, base, "refused" if refused else "failed", message)
        raise (FileRefused if refused else LandingError)(message) from e
    return result


def refuse_by_name(db: StagingDB, source, file, dataset: str, reason: str) -> LoadResult:
    """Record a file whose name cannot be landed as `refused` (its bytes are never read)."""
    name = display_name(file.name)
    message = f"{name}: {reason}"
    load_id = new_load_id()
    now = datetime.now(UTC)
    base = {
        "load_id": load_id,
        "dataset": dataset,
        "source_name": source.name,
        "file_name": name,
        "checksum": "",  # not read
        "size_bytes": int(file.size),
        "started_at": now,
    }
    _record(db, base, "refused", message)
    return LoadResult(dataset, name, "", load_id=load_id, status="refused", message=message)


def unresolved_refusals(db: StagingDB, datasets: tuple[str, ...] | None = None):
    """Refused files with no later landed load of the same name and dataset, newest refusal
    per file: `dataset, file_name, load_id, refused_at, message` (a DataFrame)."""
    scope = ""
    params: dict = {}
    if datasets:
        scope = "AND r.dataset IN (" + ", ".join(f":d{i}" for i in range(len(datasets))) + ")"
        params = {f"d{i}": d for i, d in enumerate(datasets)}
    return db.query_df(
        f"""WITH r AS (
                SELECT r.*, ROW_NUMBER() OVER (
                    PARTITION BY r.dataset, r.file_name ORDER BY r.started_at DESC) AS rn
                FROM loads r WHERE r.status = 'refused' {scope})
            SELECT r.dataset, r.file_name, r.load_id, r.started_at AS refused_at, r.message
            FROM r
            WHERE r.rn = 1 AND NOT EXISTS (
                SELECT 1 FROM loads l
                WHERE l.dataset = r.dataset AND l.file_name = r.file_name
                  AND l.status = 'landed' AND l.started_at > r.started_at)
            ORDER BY r.dataset, r.file_name""",
        params,
    )


def pending_by_file(db: StagingDB, dataset: str) -> dict[str, int]:
    """Current versions validation has not settled yet, counted by the file they came from."""
    df = db.query_df(
        f"""SELECT l.file_name, COUNT(*) AS n FROM {VERSIONS[dataset].name} s
            JOIN loads l ON l.load_id = s.load_id
            WHERE s.is_current AND s.state = 'pending'
            GROUP BY l.file_name ORDER BY l.file_name"""
    )
    return {str(f): int(n) for f, n in df.itertuples(index=False)}


# -- a whole source ------------------------------------------------------------------------


@dataclass
class IngestReport:
    """What one ingestion pass did with one dataset's files."""

    dataset: str
    results: list[LoadResult] = field(default_factory=list)
    failures: list[LoadResult] = field(default_factory=list)
    #: Refused and set aside (or, if that failed, left in the inbox: see the message).
    refused: list[LoadResult] = field(default_factory=list)
    #: Not complete yet, or changed while being landed: a later run takes them.
    waiting: list[str] = field(default_factory=list)
    #: Data-file names the listing did not take, and why (symbolic links...).
    skipped: dict[str, str] = field(default_factory=dict)
    #: Scratch folders of dead landings removed before this pass.
    scratch_removed: list[str] = field(default_factory=list)
    #: Archived files that grew after they were landed, moved back to be landed whole.
    restored: list[str] = field(default_factory=list)
    #: ZIP exports unpacked into the inbox: archive -> the members' inbox names.
    unpacked: dict[str, list[str]] = field(default_factory=dict)

    def totals(self) -> dict[str, Any]:
        landed = [r for r in self.results if r.status == "landed"]
        return {
            "files_landed": len(landed),
            "files_already_landed": sum(r.status == "duplicate" for r in self.results),
            "files_failed": len(self.failures),
            "files_refused": len(self.refused),
            "files_waiting": len(self.waiting),
            "rows_read": sum(r.rows_read for r in landed),
            "rows_new_version": sum(r.rows_new_version for r in landed),
            "rows_unchanged": sum(r.rows_unchanged for r in landed),
            "rows_stale": sum(r.rows_stale for r in landed),
            "entries_tombstoned": sum(
                r.extra["full_export"]["tombstoned_entries"]
                for r in landed
                if "full_export" in r.extra
            ),
            "full_exports_held": [
                r.file_name
                for r in landed
                if r.extra.get("full_export", {}).get("status") == "held"
            ],
        }


def _set_aside(source, f, refusal: LoadResult, report: IngestReport, log) -> None:
    """Move a refused file into the rejected folder; if that fails it stays in the inbox (and
    is refused again next run), and the message says so. The pass goes on either way."""
    from connectors.sources.base import SourceError

    try:
        where = source.reject(f, refusal.message or "")
        refusal.message = f"{refusal.message} (set aside in {where})"
    except (SourceError, OSError) as e:
        refusal.message = f"{refusal.message} (could not be set aside, left in the inbox: {e})"
    report.refused.append(refusal)
    if log:
        log.warning(f"refused: {refusal.message}")


def _restore_grown(db: StagingDB, source, dataset: str, log) -> list[str]:
    """Move back into the inbox the archived files that grew after their load (a writer still
    had them open): the rows written later are landed by this pass instead of being lost in
    the archive. Local folders only (SFTP has no ctime to tell a later write by)."""
    find = getattr(source, "written_after_archiving", None)
    late = find(dataset) if find else []
    restored: list[str] = []
    if not late:
        return restored
    sizes = dict(  # one query: the size each file had when it last landed
        db.query_df(
            """SELECT file_name, size_bytes FROM (
                   SELECT file_name, size_bytes, ROW_NUMBER() OVER (
                       PARTITION BY file_name ORDER BY started_at DESC) AS rn
                   FROM loads WHERE dataset = :d AND status = 'landed') x
               WHERE rn = 1""",
            {"d": dataset},
        ).values
    )
    for f in late:
        landed = sizes.get(f.display)
        if landed is not None and int(landed) != f.size and source.restore(f):
            restored.append(f.display)
            if log:
                log.warning(
                    f"{f.display}: written to after it was landed and archived ({landed} -> "
                    f"{f.size} bytes); moved back to the inbox to be landed whole"
                )
    return restored


def ingest_dataset(
    db: StagingDB,
    source,  # connectors.sources.base.FileSource
    dataset: str,
    *,
    fmt: FileFormat | None = None,
    workdir: Path,
    log=None,
    only: str | None = None,
    full_export: FullExportPolicy | None = None,
) -> IngestReport:
    """Land every complete file of `dataset` in the source (or just the one named `only`),
    then archive it.

    Archiving happens only after the load committed; a crash in between leaves the
    file in the inbox, and the next pass finds its checksum landed and only archives it.
    A file that cannot be landed as it is (its name, format or columns) is refused: recorded
    as `refused` and moved to the rejected folder with a reason file, and the pass goes on.
    A file whose download or landing failed for another reason is recorded as failed and
    left in place; a file that changed while it was landed is not landed and waits. The
    other files still land.
    """
    from connectors.sources.base import SourceError, name_problem

    report = IngestReport(dataset)
    report.scratch_removed = clean_dead_scratch(workdir)
    report.restored = _restore_grown(db, source, dataset, log)
    files = [
        f
        for f in source.list_complete(dataset=dataset)
        if only is None or display_name(f.name) == only
    ]
    report.waiting = [w for w in source.waiting if only is None or w == only]
    if dataset == "time_entries" and fmt is not None and fmt.has_archives:
        from staging_models.archive_intake import expand_archives

        files = expand_archives(db, source, fmt, files, workdir, report, log)
    report.skipped = {display_name(n): why for n, why in source.notices.items()}
    if log:
        for n, why in report.skipped.items():
            log.warning(f"{n}: {why}")
    if only is not None and not files and log:
        if report.waiting:
            log.info(f"{only}: not complete yet; a later run lands it")
        else:
            log.info(f"{only}: not (or no longer) in {source.describe()}; nothing to land")
    for f in files:
        problem = name_problem(f.name)
        if problem:
            _set_aside(source, f, refuse_by_name(db, source, f, dataset, problem), report, log)
            continue
        try:
            local = source.fetch(f, workdir)
        except SourceError as e:  # retryable or not, the next pass tries again
            report.failures.append(
                LoadResult(dataset, f.display, "", status="failed", message=f"{f.display}: {e}")
            )
            if log:
                log.error(f"{f.display}: not fetched: {e}")
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
                full_export=full_export,
                unchanged=lambda f=f: source.unchanged(f),
            )
        except FileChanged as e:
            report.waiting.append(f.display)
            if log:
                log.warning(str(e))
            continue
        except FileRefused as e:
            refusal = LoadResult(dataset, f.display, "", status="refused", message=str(e))
            _set_aside(source, f, refusal, report, log)
            continue
        except LandingError as e:
            failed = LoadResult(dataset, f.display, "", status="failed", message=str(e))
            report.failures.append(failed)
            if log:
                log.error(f"{f.display}: not landed: {e}")
            continue
        finally:
            if local.parent == workdir and local.exists():
                local.unlink()  # a fetched copy; the source keeps the original until archived
        report.results.append(result)
        if not source.unchanged(f):
            # Written to after the commit: what landed was a consistent snapshot, the rest is
            # new. Left in the inbox, the next pass lands the whole file again (its rows
            # already landed count as unchanged).
            result.message = "changed after it was landed; left in the inbox for the next run"
            if log:
                log.warning(f"{f.display}: {result.message}")
            continue
        source.archive(f)
        if log:
            log.info(
                f"{f.display}: {result.status}, {result.rows_read} rows read, "
                f"{result.rows_new_version} new versions"
            )
            judged = result.extra.get("full_export")
            if judged and judged["status"] == "held":
                log.warning(result.message)
            elif judged:
                log.info(result.message)
    return report


def unsettled_message(db: StagingDB, datasets: list[str]) -> str:
    """Why posting is refused while validation has not settled every row, naming the files
    whose rows wait, and the refused files that never landed."""
    parts = []
    for d in datasets:
        files = pending_by_file(db, d)
        waiting = ", ".join(f"{n} row(s) from {f}" for f, n in files.items())
        parts.append(f"{d} ({waiting})" if waiting else d)
    message = (
        "Validation has not settled every row of "
        + "; ".join(parts)
        + ": posting refused until validation is re-run (ingest_nightly_job)"
    )
    refused = unresolved_refusals(db)
    if not refused.empty:
        message += "; refused files, not landed (see the rejected folder): " + ", ".join(
            refused["file_name"].astype(str)
        )
    return message
