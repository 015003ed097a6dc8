"""PSA time-entry files that are complete in the source but not landed yet.

Reconciliation calls an entry `not_yet_staged` when such a file holds it with
content staging does not have. The rows are typed and hashed by the landing code
itself (`typed_select_sql`), so "same content" means exactly what it means when
the file is landed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from connectors.sources.base import FileSource, SourceError
from connectors.sources.canonical import DATASETS
from connectors.sources.formats import FileFormat, FileFormatError, close_raw, open_raw
from connectors.sql import sql_literal
from reconciliation._inputs import UNLANDED_SCHEMA
from staging_models.db import StagingDB
from staging_models.landing import already_landed, file_checksum, typed_select_sql


def read_unlanded(
    files: Iterable[tuple[str, Path]], *, fmt: FileFormat | None = None, workdir: Path
) -> pa.Table:
    """Keyed rows of `(file name, local path)` time-entry files as `UNLANDED_SCHEMA` Arrow.

    Read as landing reads them: the file's own name picks its vendor mapping.
    """
    ds = DATASETS["time_entries"]
    parts = []
    with duckdb.connect() as duck:
        for n, (name, path) in enumerate(files):
            view = open_raw(
                duck, path, ds, fmt or FileFormat(), workdir=workdir, view=f"u{n}", file_name=name
            )
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


@dataclass
class Unlanded:
    """Rows of complete PSA time-entry files not landed yet (`UNLANDED_SCHEMA`), and a note per
    file that could not be fetched or read: its rows are not compared, and the workbook says so.
    """

    rows: pa.Table = field(default_factory=UNLANDED_SCHEMA.empty_table)
    problems: list[str] = field(default_factory=list)


def unlanded_rows(
    db: StagingDB, source: FileSource, *, fmt: FileFormat | None = None, workdir: Path
) -> Unlanded:
    """The rows of complete time-entry files in the source whose bytes no landed load holds.

    A file that cannot be fetched or read (a broken file ingestion also refused, and keeps
    refusing, in the inbox) is skipped with a note rather than failing the reconciliation.
    Fetched into `workdir` (a local source reads in place): give it a scratch folder that the
    caller removes. A source that cannot be listed raises `SourceError`.
    """
    parts, problems = [], []
    for f in source.list_complete():
        if source.dataset_of(f.name) != "time_entries":  # vendor names included
            continue
        try:
            local = source.fetch(f, workdir)
            if already_landed(db, "time_entries", file_checksum(local)):
                continue
            parts.append(read_unlanded([(f.name, local)], fmt=fmt, workdir=workdir))
        except (SourceError, FileFormatError, duckdb.Error, OSError) as e:
            problems.append(
                f"PSA file {f.name} could not be read ({e}); its rows were not compared."
            )
    rows = pa.concat_tables(parts) if parts else UNLANDED_SCHEMA.empty_table()
    return Unlanded(rows, problems)
