"""The desk's derived worklist table: `desk_items`, rebuilt from the quarantine when it changed
(a cheap fingerprint: row count and the latest first-seen, last-seen and status times), one line
per group: the versions of one key, or keyless rows (`~load:row` keys) with the same raw values;
then new groups get their routed owner and due date (`staging_models/desk_routing.py`), and
groups the routing placed follow it when the routing rules or the projects' managers change.

It lives below the desk so a Dagster op (the scheduled digest) can rebuild it too; the desk's
pages (`desk/worklist.py`) read it.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from staging_models import desk_routing as routing
from staging_models.db import StagingDB

_REFRESH = threading.Lock()


def _json_text(db: StagingDB, column: str, key: str) -> str:
    if db.is_duckdb:
        return f"json_extract_string({column}, '$.{key}')"
    return f"(CAST({column} AS json) ->> '{key}')"


def _fingerprint(conn: Connection) -> str:
    """What `desk_items` depends on, in one scan of the quarantine: rows open or ignored, and
    the latest first-seen, last-seen and status times (every change moves one of them)."""
    row = conn.execute(
        sa.text(
            """SELECT sum(CASE WHEN status IN ('open', 'ignored') THEN 1 ELSE 0 END),
                      max(first_seen), max(last_seen), max(status_at)
               FROM quarantine"""
        )
    ).one()
    return "|".join(str(v) for v in row)


def _rebuild_sql(db: StagingDB) -> str:
    raw = "q.raw_values"
    project = _json_text(db, raw, "project_code")
    entity = _json_text(db, raw, "legal_entity")
    employee = _json_text(db, raw, "employee_id")
    group_key = group_key_sql("q")
    return f"""
    INSERT INTO desk_items (dataset, group_key, row_key, version, repeats, key_missing, status,
                            rule_codes, messages, raw_values, source_file, row_no, legal_entity,
                            project_code, first_seen, last_seen)
    WITH g AS (
        SELECT q.*, {group_key} AS group_key,
               CASE WHEN q.dataset = 'projects' THEN q.row_key ELSE {project} END AS project_code,
               {entity} AS raw_entity,
               CASE WHEN q.dataset = 'employees' THEN q.row_key ELSE {employee} END AS employee_id
        FROM quarantine q WHERE q.status IN ('open', 'ignored')
    ),
    ranked AS (
        SELECT g.*,
               row_number() OVER (PARTITION BY dataset, group_key ORDER BY
                   CASE WHEN status = 'open' THEN 0 ELSE 1 END, last_seen DESC, version DESC,
                   row_key DESC) AS pick,
               count(*) OVER (PARTITION BY dataset, group_key) AS repeats,
               min(first_seen) OVER (PARTITION BY dataset, group_key) AS group_first,
               max(last_seen) OVER (PARTITION BY dataset, group_key) AS group_last,
               min(status) OVER (PARTITION BY dataset, group_key) AS group_status
        FROM g
    )
    SELECT r.dataset, r.group_key, r.row_key, r.version, CAST(r.repeats AS INTEGER),
           r.row_key LIKE '~%', r.group_status, r.rule_codes, r.messages, r.raw_values,
           r.source_file, r.row_no,
           coalesce(r.raw_entity, p.legal_entity, e.legal_entity), r.project_code,
           r.group_first, r.group_last
    FROM ranked r
    LEFT JOIN stg_projects p ON p.row_key = r.project_code AND p.is_current
    LEFT JOIN stg_employees e ON e.row_key = r.employee_id AND e.is_current
    WHERE r.pick = 1
    """


def refresh(db: StagingDB, *, force: bool = False) -> bool:
    """Rebuild `desk_items` if the quarantine changed since the last build; True if rebuilt.
    ('ignored' < 'open', so min(status) is 'ignored' only when no row of the group is open.)"""
    with _REFRESH, db.begin() as conn:
        if not db.is_duckdb:  # one rebuild at a time across desk processes
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(715005)")
        mark, routes = _fingerprint(conn), _routing_mark(conn)
        state = dict(
            conn.execute(
                sa.text(
                    "SELECT key, value FROM desk_state "
                    "WHERE key IN ('items_built_from', 'items_routed_from')"
                )
            ).all()
        )
        built, routed = state.get("items_built_from"), state.get("items_routed_from")
        if built == mark and routed == routes and not force:
            return False
        if built != mark or force:
            conn.exec_driver_sql("DELETE FROM desk_items")
            conn.execute(sa.text(_rebuild_sql(db)))
        _route_new(db, conn)
        if routed is not None and routed != routes:  # new groups got today's routing already
            _reroute(db, conn)
        cache_owners(conn)
        _set_state(conn, "items_built_from", mark)
        _set_state(conn, "items_routed_from", routes)
        db.analyze(conn, "desk_items", "desk_assignments")
    return True


def _set_state(conn: Connection, key: str, value: str) -> None:
    conn.execute(sa.text("DELETE FROM desk_state WHERE key = :k"), {"k": key})
    conn.execute(
        sa.text("INSERT INTO desk_state (key, value) VALUES (:k, :v)"), {"k": key, "v": value}
    )


def _routing_mark(conn: Connection) -> str:
    """What routed owners depend on besides the quarantine: the routing rules and the projects'
    master data (a project that gains a manager adds a version, so the count moves)."""
    versions = conn.execute(sa.text("SELECT count(*) FROM stg_projects")).scalar()
    return f"{json.dumps(routing.routing(), sort_keys=True)}|{versions}"


_ROUTING_INPUTS = """SELECT i.dataset, i.group_key, i.rule_codes, i.legal_entity, i.first_seen,
                          p.project_manager, a.owner
                   FROM desk_items i
                   LEFT JOIN stg_projects p ON p.row_key = i.project_code AND p.is_current
                   LEFT JOIN desk_assignments a
                     ON a.dataset = i.dataset AND a.group_key = i.group_key
                   WHERE {where}"""
_ROUTING_COLUMNS = [
    "dataset",
    "group_key",
    "rule_codes",
    "legal_entity",
    "first_seen",
    "project_manager",
    "owner",
]


def _routing_inputs(conn: Connection, where: str) -> pd.DataFrame:
    rows = conn.execute(sa.text(_ROUTING_INPUTS.format(where=where))).fetchall()
    return pd.DataFrame(rows, columns=_ROUTING_COLUMNS)


def _route_new(db: StagingDB, conn: Connection) -> int:
    """Owner and due date for groups that have none yet."""
    new = _routing_inputs(conn, "a.group_key IS NULL")
    if new.empty:
        return 0
    frame = pd.DataFrame(
        {
            "dataset": new["dataset"],
            "group_key": new["group_key"],
            "owner": routing.owners(new),
            "due_date": pd.to_datetime(routing.due_dates(new)),
            "routed": True,
            "updated_by": "routing",
            "updated_at": pd.Timestamp(datetime.now(UTC)),
        }
    )
    with db.duck(conn) as duck:
        duck.register("desk_new_assignments", frame)
        try:
            db.insert_select(
                conn,
                duck,
                "desk_assignments",
                list(frame.columns),
                "SELECT dataset, group_key, owner, CAST(due_date AS DATE), routed, updated_by, "
                "updated_at FROM desk_new_assignments",
            )
        finally:
            duck.unregister("desk_new_assignments")
    return len(frame)


def _reroute(db: StagingDB, conn: Connection) -> int:
    """Groups the routing placed and nobody re-assigned follow the routing as it is now: a
    project that gains a manager (or a changed rule) moves them; an owner a person chose stays,
    and due dates stay as first set. Returns how many moved."""
    routed = _routing_inputs(conn, "a.routed")
    if routed.empty:
        return 0
    now_owner = routing.owners(routed)
    moved = routed.loc[now_owner != routed["owner"], ["dataset", "group_key"]]
    if moved.empty:
        return 0
    moved = moved.assign(owner=now_owner[moved.index])
    conn.exec_driver_sql(
        "CREATE TEMP TABLE desk_reroute (dataset TEXT, group_key TEXT, owner TEXT)"
    )
    with db.duck(conn) as duck:
        duck.register("desk_moved", moved)
        try:
            db.insert_select(
                conn, duck, "desk_reroute", list(moved.columns), "SELECT * FROM desk_moved"
            )
        finally:
            duck.unregister("desk_moved")
    conn.execute(
        sa.text(
            """UPDATE desk_assignments SET owner = r.owner, updated_by = 'routing',
                      updated_at = :now
               FROM desk_reroute r
               WHERE desk_assignments.dataset = r.dataset
                 AND desk_assignments.group_key = r.group_key AND desk_assignments.routed"""
        ),
        {"now": datetime.now(UTC)},
    )
    conn.exec_driver_sql("DROP TABLE desk_reroute")
    return len(moved)


def cache_owners(conn: Connection) -> None:
    """Keep the distinct owners in `desk_state` (after routing and after an assign), so a page
    does not scan every assignment for the owner filter's choices."""
    found = sorted(
        r[0] for r in conn.execute(sa.text("SELECT DISTINCT owner FROM desk_assignments"))
    )
    conn.execute(sa.text("DELETE FROM desk_state WHERE key = 'owners'"))
    conn.execute(
        sa.text("INSERT INTO desk_state (key, value) VALUES ('owners', :v)"),
        {"v": json.dumps(found)},
    )


def group_key_sql(alias: str) -> str:
    """The group of a quarantine row, as `desk_items.group_key` holds it."""
    return (
        f"CASE WHEN {alias}.row_key LIKE '~%' THEN '~' || md5(coalesce({alias}.raw_values, '')) "
        f"ELSE {alias}.row_key END"
    )


def in_group_sql(alias: str, gk: str = ":gk") -> str:
    """A quarantine row belongs to group `gk`: by its key (an index lookup), or for keyless rows
    by the hash of its raw values."""
    return (
        f"(({alias}.row_key = {gk} AND {gk} NOT LIKE '~%') OR "
        f"({gk} LIKE '~%' AND {alias}.row_key LIKE '~%' AND {group_key_sql(alias)} = {gk}))"
    )
