"""Streaming writers for the three export formats, all-or-nothing per file.

Each file is written under a `.part` name (which file sources ignore) and
renamed when complete, so a watcher never picks up half an export.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

FORMATS: tuple[str, ...] = ("csv", "xlsx", "parquet")
XLSX_MAX_ROWS = 200_000


def _peek(batches: Iterable[pa.Table]) -> tuple[pa.Schema, Iterator[pa.Table]]:
    """The schema of the first chunk, and all chunks (writers need the schema up front)."""
    it = iter(batches)
    first = next(it)
    return first.schema, itertools.chain([first], it)


def _write_csv(batches: Iterable[pa.Table], path: Path) -> int:
    schema, tables = _peek(batches)
    # pyarrow quotes every non-null string; nulls stay empty cells (RFC 4180 either way).
    # The default small batch size measured fastest: large batches cost page faults.
    options = pacsv.WriteOptions(quoting_style="needed")
    rows = 0
    with pacsv.CSVWriter(path, schema, write_options=options) as writer:
        for table in tables:
            writer.write_table(table)
            rows += table.num_rows
    return rows


def _write_parquet(batches: Iterable[pa.Table], path: Path) -> int:
    schema, tables = _peek(batches)
    rows = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for table in tables:
            writer.write_table(table)
            rows += table.num_rows
    return rows


def _write_xlsx(batches: Iterable[pa.Table], path: Path, sheet: str) -> int:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet[:31])
    schema, tables = _peek(batches)
    ws.append(schema.names)
    rows = 0
    for table in tables:
        rows += table.num_rows
        if rows > XLSX_MAX_ROWS:
            raise ValueError(f"xlsx output is limited to {XLSX_MAX_ROWS:,} rows per file")
        columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
        for row in zip(*columns, strict=True):
            ws.append(row)
    wb.save(path)
    return rows


def write_dataset(batches: Iterable[pa.Table], path: Path, fmt: str, sheet: str) -> int:
    """Write row chunks of one dataset to `path` atomically; return the number of rows."""
    part = path.with_name(path.name + ".part")
    try:
        if fmt == "csv":
            rows = _write_csv(batches, part)
        elif fmt == "parquet":
            rows = _write_parquet(batches, part)
        elif fmt == "xlsx":
            rows = _write_xlsx(batches, part, sheet)
        else:
            raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, path)
    return rows
