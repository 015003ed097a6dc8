"""Streaming writers for the three export formats, all-or-nothing per file.

Each file is written under a `.part` name (which file sources ignore) and
renamed when complete, so a watcher never picks up half an export.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

FORMATS: tuple[str, ...] = ("csv", "xlsx", "parquet")
XLSX_MAX_ROWS = 200_000


def _first(batches: Iterable[pa.Table]) -> tuple[pa.Table, Iterator[pa.Table]]:
    it = iter(batches)
    return next(it), it


def _write_csv(batches: Iterable[pa.Table], path: Path) -> int:
    first, rest = _first(batches)
    # pyarrow quotes every non-null string; nulls stay empty cells (RFC 4180 either way).
    # The default small batch size measured fastest: large batches cost page faults.
    options = pacsv.WriteOptions(quoting_style="needed")
    rows = 0
    with pacsv.CSVWriter(path, first.schema, write_options=options) as writer:
        for table in _chain(first, rest):
            writer.write_table(table)
            rows += table.num_rows
    return rows


def _chain(first: pa.Table, rest: Iterator[pa.Table]) -> Iterator[pa.Table]:
    yield first
    yield from rest


def _write_parquet(batches: Iterable[pa.Table], path: Path) -> int:
    first, rest = _first(batches)
    rows = 0
    with pq.ParquetWriter(path, first.schema, compression="zstd") as writer:
        for table in _chain(first, rest):
            writer.write_table(table)
            rows += table.num_rows
    return rows


def _write_xlsx(batches: Iterable[pa.Table], path: Path, sheet: str) -> int:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet[:31])
    first, rest = _first(batches)
    ws.append(first.column_names)
    rows = 0
    for table in _chain(first, rest):
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
