"""PSA time-entry files that are complete in the source but not landed yet.

Reconciliation calls an entry `not_yet_staged` when such a file holds it with
content staging does not have. The rows are typed and hashed by the landing code
itself (`typed_select_sql`), so "same content" means exactly what it means when
the file is landed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import duckdb
import pyarrow as pa

from connectors.sources.base import FileSource, dataset_of
from connectors.sources.canonical import DATASETS
from connectors.sources.formats import FileFormat, close_raw, open_raw
from reconciliation._inputs import UNLANDED_SCHEMA, sql_literal
from staging_models.db import StagingDB
from staging_models.landing import already_landed, file_checksum, typed_select_sql


def read_unlanded(
    files: Iterable[tuple[str, Path]], *, fmt: FileFormat | None = None, workdir: Path
) -> pa.Table:
    """Keyed rows of `(file name, local path)` time-entry files as `UNLANDED_SCHEMA` Arrow."""
    ds = DATASETS["time_entries"]
    parts = []
    with duckdb.connect() as duck:
        for n, (name, path) in enumerate(files):
            view = open_raw(duck, path, ds, fmt or FileFormat(), workdir=workdir, view=f"u{n}")
            _, select = typed_select_sql(ds, view, f"unlanded{n}")
            parts.append(
                duck.sql(
                    f"""SELECT {sql_literal(name)} AS file_name, row_key AS entry_id, content_hash,
                               work_date, hours, project_code, employee_id, currency
                        FROM ({select}) x WHERE NOT key_missing"""
                )
                .to_arrow_table()
                .cast(UNLANDED_SCHEMA)
            )
            close_raw(duck, view)
    return pa.concat_tables(parts) if parts else UNLANDED_SCHEMA.empty_table()


def unlanded_time_entry_files(
    db: StagingDB, source: FileSource, workdir: Path
) -> list[tuple[str, Path]]:
    """Complete time-entry files in the source whose bytes no landed load holds.

    Fetched into `workdir` (a local source reads in place): give it a scratch folder that the
    caller removes.
    """
    out = []
    for f in source.list_complete():
        if dataset_of(f.name) != "time_entries":
            continue
        local = source.fetch(f, workdir)
        if already_landed(db, "time_entries", file_checksum(local)):
            continue
        out.append((f.name, local))
    return out
