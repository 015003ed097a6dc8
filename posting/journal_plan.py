"""Writing a plan of journals into the journal ledger: the one way the revenue window's and the
posting window's intercompany plans enter it, so both keep its discipline (unsent rows of the
same external ID replaced, journals the plan no longer wants void, batches numbered per
window) while each says which unsent journals are its own to void."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from connectors.erp.documents import JOURNAL, JOURNAL_LINE
from connectors.sql import read_frame

_JNL_COLS = ", ".join(JOURNAL.names)
_LINE_COLS = ", ".join(JOURNAL_LINE.names)
_UNSENT = "state NOT IN ('sent', 'confirmed')"


def write_journal_plan(
    conn: Connection,
    *,
    plan: str,
    plan_lines: str,
    batch_id: str,
    track: Mapping[str, Any],
    void_where: str,
    void_params: Mapping[str, Any] | None = None,
    states: str = "state, erp_message",
) -> list[str]:
    """Into `journal_ledger` (with the lines), in the caller's transaction, the journals of
    the temp table `plan` (journal columns, `line_count`, `batch_no`: NULL for a held one;
    `states`: its state and message, columns or literals) and their lines in `plan_lines`. Rows of the same external IDs that
    never reached the ERP (planned, held, rejected, void) are replaced first; then unsent rows
    matching `void_where` (the caller's own journals) are void: the plan no longer wants them.
    `batch_id` formats a batch's ID from `{w}` (the window) and `{n}` (its number). Returns
    the batch IDs in order."""
    conn.exec_driver_sql(
        f"""DELETE FROM journal_ledger_lines WHERE journal_external_id IN (
                SELECT external_id FROM journal_ledger
                WHERE {_UNSENT} AND external_id IN (SELECT external_id FROM {plan}))"""
    )
    conn.exec_driver_sql(
        f"""DELETE FROM journal_ledger WHERE {_UNSENT}
              AND external_id IN (SELECT external_id FROM {plan})"""
    )
    conn.execute(
        sa.text(
            f"""UPDATE journal_ledger SET state = 'void', settled_at = :now,
                       erp_message = 'Superseded before it reached the ERP'
                WHERE state IN ('planned', 'held') AND {void_where}"""
        ),
        {**track, **(void_params or {})},
    )
    batches = read_frame(
        conn,
        f"SELECT DISTINCT batch_no FROM {plan} WHERE batch_no IS NOT NULL ORDER BY batch_no",
    )
    window_id = track["w"]
    ids = {int(b): batch_id.format(w=window_id, n=int(b)) for b in batches["batch_no"]}
    case = " ".join(f"WHEN {b} THEN '{i}'" for b, i in ids.items()) or "WHEN -1 THEN NULL"
    conn.execute(
        sa.text(
            f"""INSERT INTO journal_ledger ({_JNL_COLS}, line_count, state, erp_message,
                        batch_id, window_id, run_id, launched_by, planned_at)
                SELECT {_JNL_COLS}, line_count, {states},
                       CASE batch_no {case} END, :w, :run, :by, :now
                FROM {plan}"""
        ),
        track,
    )
    conn.exec_driver_sql(
        f"INSERT INTO journal_ledger_lines ({_LINE_COLS}) SELECT {_LINE_COLS} FROM {plan_lines}"
    )
    return list(ids.values())
