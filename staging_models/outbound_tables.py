"""What stagepost delivered to systems downstream (the PSA/CRM status feedback, and any other
outbound feed): the deliveries, what each record looked like when last delivered, and the
webhook pushes that could not be delivered.

- `outbound_deliveries`: one row per delivery of a feed (its sequence number, from 1 per feed),
  `prepared` before anything leaves (a delivery killed half-way is found there and re-sent
  under the same sequence when its content is unchanged), `delivered` in the same commit that
  moves the feed's ledger on, `superseded` when a re-run found the content changed.
- `outbound_ledger`: per feed and record key, the content hash last delivered and in which
  delivery: only records whose hash differs are sent next time (a full resend ignores it).
- `outbound_dead_letters`: a webhook push that failed after its retries, with its body and
  idempotency key, for `replay` (the files were delivered; the push is owed).
"""

from __future__ import annotations

import sqlalchemy as sa

from staging_models.tables import metadata

_ts = sa.DateTime(timezone=True)

outbound_deliveries = sa.Table(
    "outbound_deliveries",
    metadata,
    sa.Column("feed", sa.Text, nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # prepared | delivered | superseded
    sa.Column("full_resend", sa.Boolean, nullable=False),
    sa.Column("records", sa.Integer, nullable=False),
    sa.Column("content_hash", sa.Text, nullable=False),  # sha256 of the JSON Lines file
    sa.Column("files", sa.Text),  # the file names delivered, comma-separated
    sa.Column("target", sa.Text),  # where (folder, sftp://host/folder), and the webhook
    sa.Column("message", sa.Text),
    sa.Column("created_at", _ts, nullable=False),
    sa.Column("delivered_at", _ts),
    sa.PrimaryKeyConstraint("feed", "sequence"),
)

outbound_ledger = sa.Table(
    "outbound_ledger",
    metadata,
    sa.Column("feed", sa.Text, nullable=False),
    sa.Column("record_key", sa.Text, nullable=False),
    sa.Column("record_hash", sa.Text, nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),  # the delivery that carried it last
    sa.Column("delivered_at", _ts, nullable=False),
    sa.PrimaryKeyConstraint("feed", "record_key"),
)

outbound_dead_letters = sa.Table(
    "outbound_dead_letters",
    metadata,
    sa.Column("feed", sa.Text, nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("endpoint", sa.Text, nullable=False),  # the URL, password masked
    sa.Column("idempotency_key", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the JSON Lines pushed
    sa.Column("status", sa.Text, nullable=False),  # dead | replayed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", _ts, nullable=False),
    sa.Column("replayed_at", _ts),
    sa.PrimaryKeyConstraint("feed", "sequence"),
)
