"""Row versions: how a load's typed rows become new versions, tombstones or unchanged rows of
a staging table. Shared by landing (`landing.py`) and full-export tombstones (`full_export.py`),
so neither imports the other for it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from connectors.sources.canonical import Dataset
from staging_models.db import analyze
from staging_models.tables import VERSIONS


def new_load_id(now: datetime | None = None) -> str:
    """Sortable and unique: `L20261122T031500-1a2b3c4d`."""
    now = now or datetime.now(UTC)
    return f"L{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


#: Loads of master data derived from a time export are recorded under `<source> (derived)`.
DERIVED_SUFFIX = " (derived)"


def _version_ctes(ds: Dataset, defer_to_files: bool = False) -> str:
    land, stg = ds.landing_table, ds.versions_table
    has_updated = "updated_at" in ds.column_names
    stale = (
        "c.updated_at IS NOT NULL AND f.updated_at IS NOT NULL AND f.updated_at < c.updated_at"
        if has_updated
        else "FALSE"
    )
    order = "f.updated_at NULLS FIRST, f.row_no" if has_updated else "f.row_no"
    # Derived master data never replaces what a master-data file said (a file wins).
    from_file = (
        f"NOT EXISTS (SELECT 1 FROM loads d WHERE d.load_id = s.load_id "
        f"AND d.source_name LIKE '%{DERIVED_SUFFIX}')"
        if defer_to_files
        else "FALSE"
    )
    return f"""
        WITH cur AS (
            SELECT s.row_key, s.version, s.content_hash{", s.updated_at" if has_updated else ""},
                   {from_file} AS from_file
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
                        WHEN c.from_file THEN 'unchanged'
                        WHEN {stale} THEN 'stale'
                        ELSE 'new' END AS disposition,
                   ROW_NUMBER() OVER (PARTITION BY f.row_key ORDER BY {order}) AS seq
            FROM firsts f LEFT JOIN cur c ON c.row_key = f.row_key
        )
    """


def apply_versions(
    conn: Connection, ds: Dataset, load_id: str, *, defer_to_files: bool = False
) -> dict[str, int]:
    """Judge every landed row of the load once (temp table), then insert the new versions.

    `defer_to_files` (derived master data): a key whose current version came from a file
    keeps it; the derived row counts as unchanged."""
    stg = VERSIONS[ds.name]
    cols = ", ".join(ds.column_names)
    judged = f"judged_{ds.name}"
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {judged}")
    conn.execute(
        sa.text(
            f"""CREATE TEMP TABLE {judged} AS {_version_ctes(ds, defer_to_files)}
                SELECT row_no, row_key, cur_version, disposition, seq FROM judged"""
        ),
        {"load_id": load_id},
    )
    # Read three times below, and autovacuum never analyzes temporary tables.
    analyze(conn, f"{judged} (row_no, row_key, disposition)")
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
