"""Deliver a named feed of rows downstream, changed records only, crash-safe.

The one API every outbound flow uses (status feedback, resource-plan actuals, deal set-up
status): a `Feed` is a name, a key and a SELECT over the staging database (or a frame,
`deliver_rows`); `deliver` sends what changed since the feed's last delivery.

1. The feed's rows get a record key and a hash of their content, set-based in SQL; rows
   whose hash differs from `outbound_ledger` (or all, with `full_resend`) are the delivery.
   Nothing changed: no delivery, no sequence number used.
2. The delivery is numbered (per feed, from 1) and recorded `prepared` (commit), then its
   files go to the folder whole (`connectors.outbound.folders`) and, if configured, its JSON
   Lines to the webhook. A push that fails after its retries becomes a dead letter.
3. One commit records it `delivered`, moves the ledger on and keeps the dead letter.

Killed anywhere before 3, the next run finds the `prepared` delivery: the same changes give
the same content hash, so it is sent again under the same sequence and idempotency key (files
replaced by the same bytes, a receiver that saw it accepts it once); if the data changed
meanwhile the old number is `superseded` and a new delivery carries everything still owed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from connectors.outbound.encode import encode
from connectors.outbound.folders import FileFolder
from connectors.outbound.webhook import Webhook, WebhookFailed, idempotency_key
from connectors.sql import fetch_frame, load_temp, to_arrow
from staging_models.db import SCRATCH_STATISTICS_TARGET, StagingDB, analyze

#: Steps passed to `hooks` (the crash tests kill a delivery there).
STEPS = ("prepared", "files_written", "webhook_pushed")

#: Separates values in keys and hashed content (ASCII unit separator: never in PSA text).
_SEP = "chr(31)"


@dataclass(frozen=True)
class Feed:
    """A named feed: `sql` selects one row per record (its columns, in output order);
    `key` names the columns that identify a record."""

    name: str
    key: tuple[str, ...]
    sql: str
    params: dict = field(default_factory=dict)


@dataclass
class Targets:
    """Where deliveries go: a folder (local or SFTP) and, optionally, a webhook."""

    folder: FileFolder | None = None
    webhook: Webhook | None = None

    def describe(self) -> str:
        parts = [self.folder.describe()] if self.folder else []
        if self.webhook:
            parts.append(f"webhook {self.webhook.describe()}")
        return ", ".join(parts) or "nowhere"


@dataclass
class DeliveryResult:
    """What `deliver` did: `sequence` None when nothing had changed."""

    feed: str
    sequence: int | None
    records: int
    full_resend: bool
    content_hash: str | None = None
    files: list[str] = field(default_factory=list)
    webhook: str | None = None  # accepted | dead_letter | None (no webhook)
    resumed: bool = False  # a delivery a killed run had prepared, sent again
    message: str = ""


def _columns(conn: Connection, feed: Feed) -> list[str]:
    result = conn.execute(sa.text(f"SELECT * FROM ({feed.sql}) q LIMIT 0"), feed.params)
    try:
        return list(result.keys())
    finally:
        result.close()  # DuckDB refuses the next statement while a result is unfinished


def _text(col: str) -> str:
    return f"CAST(q.{col} AS VARCHAR)"


def _stage_changes(conn: Connection, feed: Feed, full_resend: bool) -> list[str]:
    """Temp tables `ob_rows` (every record, key and hash) and `ob_changed` (what to send, as
    text); returns the feed's columns."""
    cols = _columns(conn, feed)
    missing = [k for k in feed.key if k not in cols]
    if missing:
        raise ValueError(f"feed {feed.name}: key column(s) {missing} not among {cols}")
    key = (
        _text(feed.key[0])
        if len(feed.key) == 1
        else f"concat_ws({_SEP}, {', '.join(_text(k) for k in feed.key)})"
    )
    content = f"concat_ws({_SEP}, {', '.join(f'COALESCE({_text(c)}, chr(30))' for c in cols)})"
    texts = ", ".join(f"{_text(c)} AS {c}" for c in cols)
    conn.exec_driver_sql("DROP TABLE IF EXISTS ob_rows")
    conn.exec_driver_sql("DROP TABLE IF EXISTS ob_changed")
    conn.execute(
        sa.text(
            f"""CREATE TEMP TABLE ob_rows AS
                SELECT {texts}, {key} AS record_key, md5({content}) AS record_hash
                FROM ({feed.sql}) q"""
        ),
        feed.params,
    )
    # PostgreSQL never analyzes a temporary table by itself: a scan estimated at a few rows
    # leads the join with the ledger into a nested loop.
    analyze(conn, "ob_rows (record_key)", target=SCRATCH_STATISTICS_TARGET)
    changed = "TRUE" if full_resend else "l.record_hash IS DISTINCT FROM r.record_hash"
    conn.execute(
        sa.text(
            f"""CREATE TEMP TABLE ob_changed AS
                SELECT r.* FROM ob_rows r
                LEFT JOIN outbound_ledger l ON l.feed = :feed AND l.record_key = r.record_key
                WHERE {changed}"""
        ),
        {"feed": feed.name},
    )
    return cols


def _prepared(conn: Connection, feed: str) -> tuple[int, str, bool] | None:
    row = conn.execute(
        sa.text(
            """SELECT sequence, content_hash, full_resend FROM outbound_deliveries
               WHERE feed = :f AND status = 'prepared' ORDER BY sequence DESC LIMIT 1"""
        ),
        {"f": feed},
    ).all()  # not first(): DuckDB keeps a result unfinished until a fetch comes back empty
    return None if not row else (int(row[0][0]), str(row[0][1]), bool(row[0][2]))


def _next_sequence(conn: Connection, feed: str) -> int:
    return int(
        conn.execute(
            sa.text(
                "SELECT COALESCE(MAX(sequence), 0) + 1 FROM outbound_deliveries WHERE feed = :f"
            ),
            {"f": feed},
        ).scalar_one()
    )


def deliver(
    db: StagingDB,
    feed: Feed,
    targets: Targets,
    *,
    full_resend: bool = False,
    now: datetime | None = None,
    conn: Connection | None = None,
    hooks: Callable[[str], None] | None = None,
) -> DeliveryResult:
    """Deliver what changed in `feed` since its last delivery (everything: `full_resend`).

    `conn`: run on this connection (its temporary tables visible to `feed.sql`)."""
    if conn is None:
        with db.engine.connect() as own:
            return deliver(
                db, feed, targets, full_resend=full_resend, now=now, conn=own, hooks=hooks
            )
    now = now or datetime.now(UTC)
    hook = hooks or (lambda step: None)
    with conn.begin():
        cols = _stage_changes(conn, feed, full_resend)
        n = int(conn.exec_driver_sql("SELECT COUNT(*) FROM ob_changed").scalar_one())
        pending = _prepared(conn, feed.name)
        if n == 0 and not full_resend:
            if pending is not None:  # what it carried was delivered since, or is no more
                _set_status(conn, feed.name, pending[0], "superseded", "nothing left to send")
            return DeliveryResult(feed.name, None, 0, False, message="nothing changed")
        as_json = db.json_object_sql([(c, c) for c in cols])
        frame = fetch_frame(
            conn,
            f"SELECT {', '.join(cols)}, {as_json} AS ob_json FROM ob_changed ORDER BY record_key",
            arrow_dtypes=True,  # all text: PostgreSQL sends it by COPY, not row by row
            schema=pa.schema([(c, pa.string()) for c in (*cols, "ob_json")]),
        )
        lines = frame.pop("ob_json")
        sequence = pending[0] if pending else _next_sequence(conn, feed.name)
    resumed = False
    encoded = encode(
        feed.name, sequence, frame, full_resend=full_resend, created_at=now, json_lines=lines
    )
    with conn.begin():
        if pending and pending[1] == encoded.content_hash and pending[2] == full_resend:
            resumed = True
        else:
            if pending:
                _set_status(conn, feed.name, pending[0], "superseded", "content changed")
                sequence = _next_sequence(conn, feed.name)
                encoded = encode(
                    feed.name,
                    sequence,
                    frame,
                    full_resend=full_resend,
                    created_at=now,
                    json_lines=lines,
                )
            conn.execute(
                sa.text(
                    """INSERT INTO outbound_deliveries (feed, sequence, status, full_resend,
                           records, content_hash, files, target, created_at)
                       VALUES (:f, :s, 'prepared', :full, :n, :h, :files, :target, :now)"""
                ),
                {
                    "f": feed.name,
                    "s": sequence,
                    "full": full_resend,
                    "n": len(frame),
                    "h": encoded.content_hash,
                    "files": ",".join(encoded.files),
                    "target": targets.describe(),
                    "now": now,
                },
            )
    hook("prepared")
    if targets.folder is not None:
        for name, data in encoded.files.items():  # the manifest last
            targets.folder.put(name, data)
    hook("files_written")
    dead: dict | None = None
    webhook_state = None
    if targets.webhook is not None:
        body = next(d for name, d in encoded.files.items() if name.endswith(".jsonl"))
        try:
            targets.webhook.push(
                body, feed=feed.name, sequence=sequence, content_hash=encoded.content_hash
            )
            webhook_state = "accepted"
        except WebhookFailed as e:
            webhook_state = "dead_letter"
            dead = {
                "endpoint": targets.webhook.describe(),
                "key": idempotency_key(feed.name, sequence, encoded.content_hash),
                "body": body.decode(),
                "attempts": e.attempts,
                "error": str(e)[:2000],
            }
    hook("webhook_pushed")
    with conn.begin():
        _record_delivered(conn, feed.name, sequence, now, dead)
    return DeliveryResult(
        feed.name,
        sequence,
        len(frame),
        full_resend,
        encoded.content_hash,
        list(encoded.files),
        webhook_state,
        resumed,
        f"delivered {len(frame)} records as #{sequence} to {targets.describe()}"
        + (" (webhook failed: dead letter kept)" if dead else ""),
    )


def _set_status(conn: Connection, feed: str, sequence: int, status: str, message: str) -> None:
    conn.execute(
        sa.text(
            """UPDATE outbound_deliveries SET status = :st, message = :m
               WHERE feed = :f AND sequence = :s"""
        ),
        {"st": status, "m": message, "f": feed, "s": sequence},
    )


def _record_delivered(
    conn: Connection, feed: str, sequence: int, now: datetime, dead: dict | None
) -> None:
    """The delivery is done: ledger moved on, delivery `delivered`, dead letter kept (one
    transaction: the caller's)."""
    conn.execute(
        sa.text(
            """INSERT INTO outbound_ledger (feed, record_key, record_hash, sequence, delivered_at)
               SELECT :f, record_key, record_hash, :s, :now FROM ob_changed
               ON CONFLICT (feed, record_key) DO UPDATE SET
                   record_hash = excluded.record_hash, sequence = excluded.sequence,
                   delivered_at = excluded.delivered_at"""
        ),
        {"f": feed, "s": sequence, "now": now},
    )
    conn.execute(
        sa.text(
            """UPDATE outbound_deliveries SET status = 'delivered', delivered_at = :now,
                   message = :m WHERE feed = :f AND sequence = :s"""
        ),
        {
            "f": feed,
            "s": sequence,
            "now": now,
            "m": "webhook failed: dead letter" if dead else None,
        },
    )
    if dead:
        conn.execute(
            sa.text(
                """INSERT INTO outbound_dead_letters (feed, sequence, endpoint, idempotency_key,
                       body, status, attempts, last_error, created_at)
                   VALUES (:f, :s, :endpoint, :key, :body, 'dead', :attempts, :error, :now)"""
            ),
            {"f": feed, "s": sequence, "now": now, **dead},
        )


def kept_temp(conn: Connection, name: str, frame: pd.DataFrame, schema) -> None:
    """Temporary table `name` holding `frame` (Arrow `schema`) until the connection closes
    (`load_temp`'s table is dropped at commit on PostgreSQL, and a delivery commits between
    its steps). Call inside a transaction."""
    load_temp(conn, f"{name}_load", frame, schema)
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    cols = ", ".join(schema.names)
    conn.exec_driver_sql(f"CREATE TEMP TABLE {name} AS SELECT {cols} FROM {name}_load")


def deliver_rows(
    db: StagingDB,
    name: str,
    rows: pd.DataFrame,
    key: Sequence[str],
    targets: Targets,
    *,
    schema=None,
    full_resend: bool = False,
    now: datetime | None = None,
) -> DeliveryResult:
    """`deliver` for rows computed outside the staging database (a frame): loaded into a
    temporary table first (`schema`: its Arrow schema; default: inferred, decimals exact)."""
    table = to_arrow(rows, schema) if schema is not None else pa.Table.from_pandas(rows)
    with db.engine.connect() as conn:
        with conn.begin():
            kept_temp(conn, "ob_input", rows, table.schema)
        cols = ", ".join(table.schema.names)
        feed = Feed(name, tuple(key), f"SELECT {cols} FROM ob_input")
        return deliver(db, feed, targets, full_resend=full_resend, now=now, conn=conn)


def replay_dead_letters(
    db: StagingDB, webhook: Webhook, *, feed: str | None = None, now: datetime | None = None
) -> dict[str, int]:
    """Push every dead letter again (oldest first, same body and idempotency key); those
    accepted become `replayed`, the others stay with their last error."""
    now = now or datetime.now(UTC)
    letters = db.query_df(
        """SELECT feed, sequence, body, idempotency_key FROM outbound_dead_letters
           WHERE status = 'dead' AND (CAST(:feed AS VARCHAR) IS NULL OR feed = :feed)
           ORDER BY feed, sequence""",
        {"feed": feed},
    )
    out = {"replayed": 0, "still_dead": 0}
    for row in letters.itertuples(index=False):  # one HTTP request each, not a row loop in SQL
        content_hash = str(row.idempotency_key).rsplit(":", 1)[-1]
        try:
            attempts = webhook.push(
                str(row.body).encode(),
                feed=row.feed,
                sequence=int(row.sequence),
                content_hash=content_hash,
            )
            status, error = "replayed", None
            out["replayed"] += 1
        except WebhookFailed as e:
            attempts, status, error = e.attempts, "dead", str(e)[:2000]
            out["still_dead"] += 1
        with db.begin() as conn:
            conn.execute(
                sa.text(
                    """UPDATE outbound_dead_letters SET status = :st, last_error = :e,
                           attempts = attempts + :a,
                           replayed_at = CASE WHEN :st = 'replayed' THEN :now END
                       WHERE feed = :f AND sequence = :s"""
                ),
                {
                    "st": status,
                    "e": error,
                    "a": attempts,
                    "now": now,
                    "f": row.feed,
                    "s": int(row.sequence),
                },
            )
    return out
