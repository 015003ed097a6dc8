"""Explicit staging table definitions (SQLAlchemy Core).

Explicit DDL, not reflection: duckdb-engine cannot reflect tables on SQLAlchemy
2.1, and explicit columns keep DuckDB and PostgreSQL staging identical.
"""

from __future__ import annotations

import sqlalchemy as sa

from connectors.sources.canonical import DATASETS, DECIMALS, Column, Dataset

#: The head Alembic revision's number (`staging_models/alembic/staging/versions/`), kept in
#: `schema_meta` so releases before Alembic refuse a newer database. A table change is a new
#: revision (and a bump here, which the revision writes into `schema_meta`).
SCHEMA_VERSION = 14

metadata = sa.MetaData()


def sa_type(col: Column) -> sa.types.TypeEngine:
    """The SQL type of a canonical column: decimals stay exact (never floats)."""
    if col.type in DECIMALS:
        precision, scale = DECIMALS[col.type]
        return sa.Numeric(precision, scale, asdecimal=True)
    return {
        "text": sa.Text(),
        "date": sa.Date(),
        "timestamptz": sa.DateTime(timezone=True),
        "bool": sa.Boolean(),
        "int": sa.Integer(),
    }[col.type]


schema_meta = sa.Table(
    "schema_meta",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

loads = sa.Table(
    "loads",
    metadata,
    sa.Column("load_id", sa.Text, primary_key=True),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("source_name", sa.Text, nullable=False),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("checksum", sa.Text, nullable=False),  # sha256 of the file's bytes
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # landed | failed | refused
    sa.Column("rows_read", sa.Integer),
    sa.Column("rows_new_version", sa.Integer),
    sa.Column(
        "rows_unchanged", sa.Integer
    ),  # identical to the current version, or repeated in the file
    sa.Column("rows_stale", sa.Integer),  # older than the current version (updated_at)
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("message", sa.Text),
)


#: Landed raw rows removed by retention (`staging_models.retention`), per load: conservation
#: counts them as landed, so "rows read = rows landed" still holds after the purge.
landing_purges = sa.Table(
    "landing_purges",
    metadata,
    sa.Column("load_id", sa.Text, primary_key=True),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("rows_purged", sa.Integer, nullable=False),
    sa.Column("purged_at", sa.DateTime(timezone=True), nullable=False),
)


def _landing_table(ds: Dataset) -> sa.Table:
    """Every row read from a file, as typed values plus the raw text of every non-text column."""
    cols = [
        sa.Column("load_id", sa.Text, nullable=False),
        sa.Column("row_no", sa.Integer, nullable=False),
        sa.Column("row_key", sa.Text, nullable=False),
        sa.Column("key_missing", sa.Boolean, nullable=False),
        sa.Column("content_hash", sa.Text, nullable=False),
        sa.Column("type_errors", sa.Text),  # comma-separated columns whose text did not parse
    ]
    cols += [sa.Column(c.name, sa_type(c)) for c in ds.columns]
    cols += [sa.Column(f"raw_{c.name}", sa.Text) for c in ds.columns if c.type != "text"]
    return sa.Table(ds.landing_table, metadata, *cols, sa.PrimaryKeyConstraint("load_id", "row_no"))


def _versions_table(ds: Dataset) -> sa.Table:
    """One row per distinct content of a key: version 1, 2, ...; tombstones included."""
    cols = [
        sa.Column("row_key", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("load_id", sa.Text, nullable=False),
        sa.Column("row_no", sa.Integer, nullable=False),
        sa.Column("key_missing", sa.Boolean, nullable=False),
        sa.Column("content_hash", sa.Text, nullable=False),
        sa.Column("type_errors", sa.Text),
    ]
    cols += [sa.Column(c.name, sa_type(c)) for c in ds.columns]
    cols += [
        sa.Column("is_current", sa.Boolean, nullable=False),
        # pending | valid | quarantined | superseded | not_postable (set by the contracts)
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("landed_at", sa.DateTime(timezone=True), nullable=False),
    ]
    return sa.Table(
        ds.versions_table, metadata, *cols, sa.PrimaryKeyConstraint("row_key", "version")
    )


LANDING: dict[str, sa.Table] = {name: _landing_table(ds) for name, ds in DATASETS.items()}
VERSIONS: dict[str, sa.Table] = {name: _versions_table(ds) for name, ds in DATASETS.items()}

#: PostgreSQL: the share of each page of a versions table (`stg_*`) that inserts fill. Validation
#: sets the `state` of every version it judges (one UPDATE of ~850,000 rows at 1M entries), and
#: PostgreSQL writes a new copy of each row: with half of each page free, the copy stays on
#: its page (a HOT update, no new primary-key entry). At 100 (the default) the copies went to
#: new pages with an index entry each: 26 s, against 8.6 s at 50 (99.8% HOT), on the same
#: 851,191 rows. The table ends the same size either way (the old copies stay until vacuumed).
#: DuckDB has no fill factor. Schema revision 0013 sets it on existing databases. An event, not
#: `postgresql_with`: duckdb-engine derives from the PostgreSQL dialect and would render it.
VERSIONS_FILLFACTOR = 50
for _versions in VERSIONS.values():
    sa.event.listen(
        _versions,
        "after_create",
        sa.DDL(f"ALTER TABLE {_versions.name} SET (fillfactor = {VERSIONS_FILLFACTOR})").execute_if(
            dialect="postgresql"
        ),
    )
