"""Helpers for billing holds and status feedback tests: projects on a hold, invoices that
bill entries, and an HTTP receiver on a loopback port that dedups by idempotency key."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import sqlalchemy as sa

from staging_models.db import StagingDB


def set_project(
    db: StagingDB,
    code: str = "P1",
    *,
    hold: bool | None = None,
    reason: str | None = None,
    since: date | None = None,
    legal_entity: str = "DE01",
    currency: str = "EUR",
) -> int:
    """A new current version of project `code` (valid), with or without a billing hold."""
    with db.begin() as conn:
        v = conn.execute(
            sa.text("SELECT COALESCE(MAX(version), 0) + 1 FROM stg_projects WHERE row_key = :p"),
            {"p": code},
        ).scalar_one()
        conn.execute(
            sa.text(
                "UPDATE stg_projects SET is_current = FALSE, state = 'superseded' "
                "WHERE row_key = :p AND is_current"
            ),
            {"p": code},
        )
        conn.execute(
            sa.text(
                """INSERT INTO stg_projects (row_key, version, load_id, row_no, key_missing,
                       content_hash, project_code, project_name, customer_id, customer_name,
                       legal_entity, currency, billing_method, status, billing_hold,
                       billing_hold_reason, billing_hold_since, is_current, state, landed_at)
                   VALUES (:p, :v, 'Ltest', 1, FALSE, :h, :p, 'Project ' || :p, 'C1', 'Acme',
                           :le, :cur, 'time_and_materials', 'open', :hold, :reason, :since,
                           TRUE, 'valid', :now)"""
            ),
            {
                "p": code,
                "v": int(v),
                "h": f"h{v}",
                "le": legal_entity,
                "cur": currency,
                "hold": hold,
                "reason": reason,
                "since": since,
                "now": datetime.now(UTC),
            },
        )
    return int(v)


def bill_entries(db: StagingDB, invoice_id: str, entry_ids: str) -> None:
    """The current lines of an invoice bill these entries (`;`-separated)."""
    with db.begin() as conn:
        conn.execute(
            sa.text("UPDATE validated_invoice_lines SET entry_ids = :e WHERE invoice_id = :i"),
            {"e": entry_ids, "i": invoice_id},
        )


@dataclass
class Receiver:
    """A webhook receiver: answers `fail_next` requests with 503, then accepts; a key seen
    before is answered 200 again without being accepted twice."""

    fail_next: int = 0
    accepted: dict[str, bytes] = field(default_factory=dict)  # idempotency key -> body
    requests: list[tuple[str, int]] = field(default_factory=list)  # (key, status)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/feedback"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                key = self.headers.get("Idempotency-Key", "")
                with receiver.lock:
                    if receiver.fail_next > 0:
                        receiver.fail_next -= 1
                        status = 503
                    else:
                        status = 200
                        receiver.accepted.setdefault(key, body)
                    receiver.requests.append((key, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
