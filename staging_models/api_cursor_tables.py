"""The API pull cursor: per source and dataset, how far changes have been landed.

`cursor_at` moves only after the window it closes was landed and committed (see
`staging_models.api_pull`): a pull that dies before leaves it where it was, and the next pull
asks for the same changes again (versioning lands them once).
"""

from __future__ import annotations

import sqlalchemy as sa

from staging_models.tables import metadata

_ts = sa.DateTime(timezone=True)

api_cursors = sa.Table(
    "api_cursors",
    metadata,
    sa.Column("source_name", sa.Text, nullable=False),  # e.g. harvest
    sa.Column("dataset", sa.Text, nullable=False),  # time_entries, projects, ...
    # Changes up to here are landed: the next window starts here, less the look-back.
    sa.Column("cursor_at", _ts, nullable=False),
    sa.Column("window_from", _ts),  # the last landed window (what was asked for)
    sa.Column("window_to", _ts),
    sa.Column("mode", sa.Text, nullable=False),  # incremental | full | snapshot
    sa.Column("records", sa.Integer, nullable=False),  # records the last window held
    sa.Column("load_id", sa.Text),  # its load (NULL: an empty window, nothing to land)
    sa.Column("file_name", sa.Text),
    sa.Column("updated_at", _ts, nullable=False),
    sa.PrimaryKeyConstraint("source_name", "dataset"),
)
