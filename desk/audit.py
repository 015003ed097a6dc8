"""The desk's audit trail: every action, who took it, when, on how many rows, and which
quarantine rows it changed (so an undo reopens exactly those)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from desk.sessions import Session
from staging_models.db import StagingDB


def record(
    conn: Connection,
    who: Session,
    action: str,
    *,
    now: datetime,
    dataset: str | None = None,
    detail: dict[str, Any] | None = None,
    rows: int = 0,
    run_id: str | None = None,
) -> str:
    audit_id = uuid.uuid4().hex
    conn.execute(
        sa.text(
            """INSERT INTO desk_audit (audit_id, acted_at, actor, role, action, dataset, detail,
                                       row_count, run_id)
               VALUES (:id, :now, :actor, :role, :action, :ds, :detail, :rows, :run)"""
        ),
        {
            "id": audit_id,
            "now": now,
            "actor": who.username,
            "role": who.role,
            "action": action,
            "ds": dataset,
            "detail": json.dumps(detail or {}, sort_keys=True, default=str),
            "rows": rows,
            "run": run_id,
        },
    )
    return audit_id


def recent(db: StagingDB, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        rows = [
            dict(r._mapping)
            for r in conn.execute(
                sa.text(
                    f"""SELECT audit_id, acted_at, actor, role, action, dataset, detail, row_count,
                               run_id FROM desk_audit ORDER BY acted_at DESC, audit_id
                        LIMIT {int(limit)} OFFSET {int(offset)}"""
                )
            )
        ]
        undone = {
            json.loads(r[0]).get("undoes")
            for r in conn.execute(sa.text("SELECT detail FROM desk_audit WHERE action = 'reopen'"))
        }
    for r in rows:
        r["detail_obj"] = json.loads(r["detail"])
        r["undone"] = r["audit_id"] in undone
    return rows
