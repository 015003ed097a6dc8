"""Reading PSA export files into DuckDB as canonical text columns.

The output of `open_raw` is a DuckDB view with the dataset's canonical columns
(all VARCHAR, missing optional columns NULL) plus `_row_no`, the record's row in
the file counting the header as row 1 (what a user sees in Excel). Typing and
validation happen later, in SQL, so a bad value becomes a quarantine reason
rather than a failed load.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa

from connectors.sources.canonical import Dataset

_CODEC_CHUNK = 1 << 20
_XLSX_ROW = "__xlsx_row__"


class FileFormatError(Exception):
    """A file that cannot be read as the dataset it claims to be; names the file and the problem."""


@dataclass(frozen=True)
class FileFormat:
    """How a source writes its files. Defaults are the canonical format."""

    encoding: str = "utf-8"
    delimiter: str = ","
    decimal_comma: bool = False
    sheet: str | None = None  # XLSX: sheet name; None = first sheet
    header_row: int = 1  # XLSX: row holding the header (1-based)


def normalise_header(name: str) -> str:
    """`" Entry ID "` → `entry_id`: headers compare case- and space-insensitively."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lstrip("\ufeff").lower()).strip("_")


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name in {"utf-8", "utf-8-sig"}


def transcode_to_utf8(path: Path, encoding: str, dest: Path) -> Path:
    """Stream a legacy-encoded file (cp1252, latin-1, utf-16...) into UTF-8, chunk by chunk.

    Undecodable bytes are an error naming the byte offset, never silently replaced.
    """
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    opener = _open_maybe_gzip(path)
    with opener as src, open(dest, "w", encoding="utf-8", newline="") as out:
        while chunk := src.read(_CODEC_CHUNK):
            try:
                out.write(decoder.decode(chunk))
            except UnicodeDecodeError as e:
                raise FileFormatError(
                    f"{path.name}: byte {offset + e.start} is not valid {encoding}"
                ) from None
            offset += len(chunk)
        out.write(decoder.decode(b"", final=True))
    return dest


def _open_maybe_gzip(path: Path):
    import gzip

    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _map_columns(path: Path, dataset: Dataset, header: list[str]) -> dict[str, str]:
    """Canonical column -> column name in the file; refuses a file missing a required column."""
    by_norm: dict[str, str] = {}
    for h in header:
        n = normalise_header(h)
        if n in by_norm:
            raise FileFormatError(f"{path.name}: column {n!r} appears twice in the header")
        by_norm[n] = h
    missing = [c.name for c in dataset.columns if c.required and c.name not in by_norm]
    if missing:
        raise FileFormatError(
            f"{path.name}: missing column(s) {', '.join(missing)} for dataset {dataset.name}"
        )
    return {c.name: by_norm[c.name] for c in dataset.columns if c.name in by_norm}


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _canonical_view(
    con: duckdb.DuckDBPyConnection,
    view: str,
    source_sql: str,
    dataset: Dataset,
    mapping: dict[str, str],
    fmt: FileFormat,
    row_no_sql: str,
) -> None:
    cols = []
    for c in dataset.columns:
        if c.name not in mapping:
            cols.append(f"CAST(NULL AS VARCHAR) AS {c.name}")
            continue
        expr = f"CAST({_quote_ident(mapping[c.name])} AS VARCHAR)"
        if fmt.decimal_comma and c.is_decimal:
            expr = f"replace({expr}, ',', '.')"
        cols.append(f"{expr} AS {c.name}")
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {', '.join(cols)}, "
        f"CAST({row_no_sql} AS INTEGER) AS _row_no FROM {source_sql}"
    )


def open_raw(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    dataset: Dataset,
    fmt: FileFormat | None = None,
    *,
    workdir: Path,
    view: str = "raw_src",
) -> str:
    """Expose `path` as a view of canonical text columns on `con`; returns the view name."""
    fmt = fmt or FileFormat()
    name = path.name.lower()
    if name.endswith(".xlsx"):
        table = read_xlsx_as_text(path, dataset, fmt)
        con.register(f"{view}_arrow", table)
        mapping = _map_columns(path, dataset, table.column_names[1:])
        _canonical_view(con, view, f"{view}_arrow", dataset, mapping, fmt, _XLSX_ROW)
        return view
    if name.endswith(".parquet"):
        src = f"read_parquet({_sql_str(str(path))})"
    elif name.endswith((".csv", ".csv.gz", ".txt", ".tsv")):
        if not _is_utf8(fmt.encoding):
            workdir.mkdir(parents=True, exist_ok=True)
            path = transcode_to_utf8(path, fmt.encoding, workdir / (path.name + ".utf8.csv"))
        src = (
            f"read_csv({_sql_str(str(path))}, header=true, all_varchar=true, "
            f"delim={_sql_str(fmt.delimiter)}, quote='\"', escape='\"', "
            "strict_mode=true, null_padding=false, "
            "compression='auto')"
        )
    else:
        raise FileFormatError(f"{path.name}: unsupported file type")
    try:
        header = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
    except duckdb.Error as e:
        raise FileFormatError(f"{path.name}: cannot read as {dataset.name}: {e}") from None
    mapping = _map_columns(path, dataset, header)
    # DuckDB keeps file order (preserve_insertion_order), so this is the record's row.
    _canonical_view(con, view, src, dataset, mapping, fmt, "row_number() OVER () + 1")
    return view


def _cell_text(value: object, col_type: str) -> str | None:
    """One XLSX cell as canonical text (dates ISO, numbers exact, Excel serials converted)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if col_type == "date":
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, int | float):
        if col_type == "date":
            from openpyxl.utils.datetime import from_excel

            return from_excel(value).date().isoformat()
        if isinstance(value, int) or float(value).is_integer():
            return str(int(value))
        # repr is the shortest text that round-trips: what Excel wrote in the XML.
        return format(Decimal(repr(value)), "f")
    return str(value)


def read_xlsx_as_text(path: Path, dataset: Dataset, fmt: FileFormat) -> pa.Table:
    """The sheet as an Arrow table of strings. XLSX exports are small; this reads cell by cell."""
    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # noqa: BLE001 - openpyxl raises many kinds for a broken file
        raise FileFormatError(f"{path.name}: not a readable XLSX workbook ({e})") from None
    try:
        if fmt.sheet is not None and fmt.sheet not in wb.sheetnames:
            raise FileFormatError(f"{path.name}: no sheet named {fmt.sheet!r}")
        ws = wb[fmt.sheet] if fmt.sheet else wb.worksheets[0]
        rows = ws.iter_rows(min_row=fmt.header_row, values_only=True)
        try:
            header = [("" if h is None else str(h)) for h in next(rows)]
        except StopIteration:
            raise FileFormatError(f"{path.name}: the sheet is empty") from None
        types = []
        for h in header:
            n = normalise_header(h)
            types.append(dataset.column(n).type if n in dataset.column_names else "text")
        width = len(header)
        columns: list[list[str | None]] = [[] for _ in range(width)]
        row_numbers: list[int] = []
        for row_no, row in enumerate(rows, start=fmt.header_row + 1):
            if row is None or all(v is None for v in row):
                continue  # blank rows are layout, not records; row numbers stay true
            row_numbers.append(row_no)
            for i in range(width):
                columns[i].append(_cell_text(row[i] if i < len(row) else None, types[i]))
    finally:
        wb.close()
    names = [h or f"column_{i + 1}" for i, h in enumerate(header)]
    data = {_XLSX_ROW: pa.array(row_numbers, type=pa.int32())}
    data.update({n: pa.array(col, type=pa.string()) for n, col in zip(names, columns, strict=True)})
    return pa.table(data)
