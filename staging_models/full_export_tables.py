"""Tables of the full-export deletion check: each judged export, what vanished, the audit trail.

A full export is a complete snapshot of its scope; an entry it lacks was deleted in the
PSA. Its tombstones are versions like any other (`stg_time_entries`, through a derived
load); these tables record why, and what an operator decided when the share was too high.
"""

from __future__ import annotations

import sqlalchemy as sa

from staging_models.tables import metadata

_ts = sa.DateTime(timezone=True)

full_exports = sa.Table(
    "full_exports",
    metadata,
    sa.Column("load_id", sa.Text, primary_key=True),  # the load of the export file
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("date_from", sa.Date),  # the work dates it covers (NULL: no range, not judged)
    sa.Column("date_to", sa.Date),
    sa.Column("range_source", sa.Text, nullable=False),  # file_name | setting | rows | none
    sa.Column("scope_entries", sa.Integer, nullable=False),  # live entries dated in range
    sa.Column("vanished_entries", sa.Integer, nullable=False),  # of those, absent from the file
    sa.Column("tombstoned_entries", sa.Integer, nullable=False),
    sa.Column("max_share", sa.Text, nullable=False),  # exact decimal text, e.g. 0.05
    # complete (nothing vanished) | applied | held | confirmed | dismissed | superseded | no_range
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("tombstone_load_id", sa.Text),  # the derived load holding the tombstones
    sa.Column("judged_at", _ts, nullable=False),
    sa.Column("decided_at", _ts),
    sa.Column("decided_by", sa.Text),
    sa.Column("decision_reason", sa.Text),
)

full_export_vanished = sa.Table(
    "full_export_vanished",
    metadata,
    sa.Column("load_id", sa.Text, nullable=False),
    sa.Column("row_key", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),  # the current version when judged
    sa.Column("tombstone_version", sa.Integer),
    # held | tombstoned | skipped (changed or delivered again before confirmation) | dismissed
    sa.Column("status", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("load_id", "row_key"),
)

full_export_events = sa.Table(
    "full_export_events",
    metadata,
    sa.Column("load_id", sa.Text, nullable=False),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column(
        "event", sa.Text, nullable=False
    ),  # applied | held | confirmed | dismissed | superseded
    sa.Column("event_at", _ts, nullable=False),
    sa.Column("actor", sa.Text),  # run id or operator
    sa.Column("reason", sa.Text),
    sa.Column("vanished_entries", sa.Integer),
    sa.Column("tombstoned_entries", sa.Integer),
)
