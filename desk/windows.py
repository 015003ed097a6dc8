"""Posting windows' history: who launched each, note, override reason, dry run or real, scope,
counts, and hours and amounts per legal entity and currency from the ledgers (exact decimals,
never summed across currencies)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from desk import downloads
from staging_models.db import StagingDB
from staging_models.ledger_tables import ledger_rows

PAGE = 50
#: The settings of a window that say what it covered and how (the rest is tuning).
SCOPE = (
    "dry_run",
    "legal_entities",
    "date_from",
    "date_to",
    "include_invoices",
    "max_lines",
    "closed_period_policy",
    "posting_hours",
)


def _loads(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text, parse_float=Decimal)
    except ValueError:
        return {"unreadable": text}
    return value if isinstance(value, dict) else {"value": value}


def history(db: StagingDB, offset: int = 0) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        rows = [
            dict(r._mapping)
            for r in conn.execute(
                sa.text(
                    f"""SELECT window_id, run_id, launched_by, status, note, override_reason,
                               message, started_at, finished_at, config, counts
                        FROM posting_windows ORDER BY started_at DESC, window_id
                        LIMIT {PAGE} OFFSET {int(offset)}"""
                )
            )
        ]
    for r in rows:
        r["config_obj"], r["counts_obj"] = _loads(r["config"]), _loads(r["counts"])
        r["dry_run"] = r["status"] == "dry_run" or bool(r["config_obj"].get("dry_run"))
        r["preview"] = downloads.preview_name(r["window_id"])
    return rows


def window(db: StagingDB, window_id: str) -> dict[str, Any] | None:
    with db.engine.connect() as conn:
        head = conn.execute(
            sa.text("SELECT * FROM posting_windows WHERE window_id = :w"), {"w": window_id}
        ).first()
        if head is None:
            return None
        w = dict(head._mapping)
        w["time_lines"] = [
            dict(r._mapping)
            for r in conn.execute(
                sa.text(
                    f"""SELECT legal_entity, currency, state, count(*) AS lines,
                              sum(hours) AS hours, sum(amount) AS amount
                       FROM {ledger_rows("posting_ledger")} l WHERE window_id = :w
                       GROUP BY legal_entity, currency, state
                       ORDER BY legal_entity, currency, state"""
                ),
                {"w": window_id},
            )
        ]
        w["invoices"] = [
            dict(r._mapping)
            for r in conn.execute(
                sa.text(
                    f"""SELECT legal_entity, currency, state, count(*) AS documents,
                              sum(total_amount) AS amount
                       FROM {ledger_rows("invoice_ledger")} l WHERE window_id = :w
                       GROUP BY legal_entity, currency, state
                       ORDER BY legal_entity, currency, state"""
                ),
                {"w": window_id},
            )
        ]
    w["config_obj"], w["counts_obj"] = _loads(w["config"]), _loads(w["counts"])
    w["scope"] = {k: w["config_obj"].get(k) for k in SCOPE if k in w["config_obj"]}
    w["dry_run"] = w["status"] == "dry_run" or bool(w["config_obj"].get("dry_run"))
    w["preview"] = downloads.preview_name(window_id)
    return w
