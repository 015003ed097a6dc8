"""Reading PSA export files into DuckDB as canonical text columns.

The output of `open_raw` is a DuckDB view with the dataset's canonical columns
(all VARCHAR, missing optional columns NULL) plus `_row_no`, the record's row in
the file counting the header as row 1 (what a user sees in Excel; a quoted field
spanning several lines is still one row). Typing and validation happen later, in
SQL, so a bad value becomes a quarantine reason rather than a failed load.

Formats met in the wild: CSV in UTF-8 with or without a BOM, or in a declared
legacy encoding (cp1252, latin-1, utf-16: transcoded to a UTF-8 copy in 1 MiB
chunks); any delimiter; decimal commas with thousands separators; quoted fields
with embedded newlines; gzip-compressed CSV (`.csv.gz`, read by DuckDB as a
stream); XLSX with a chosen sheet and header row, where numbers in a date column
are Excel serial dates; Parquet. CSV and Parquet never pass through Python rows:
DuckDB scans them, so memory stays flat whatever the file size. A vendor's own
columns are mapped onto the canonical ones by a `SourceMapping` (mapping.py).

Hostile files are refused before they cost memory (limits.py: sizes, ratios, rows,
cells, XML entities), and a CSV DuckDB cannot parse is explained by line and cause
(csv_diagnose.py), without DuckDB's paths and options.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from connectors.sources import csv_diagnose
from connectors.sources.canonical import Dataset
from connectors.sources.limits import FileFormatError, FileLimits, check_xlsx
from connectors.sources.mapping import (
    DatasetMapping,
    MappingError,
    SourceMapping,
    normalise_header,
)
from connectors.sql import quote_ident, sql_literal

__all__ = [
    "FileFormat",
    "FileFormatError",
    "FileLimits",
    "close_raw",
    "normalise_header",
    "open_raw",
    "transcode_to_utf8",
]

_CODEC_CHUNK = 1 << 20
_XLSX_BATCH = 50_000  # XLSX rows per Arrow batch: Python lists never hold more than this
_DUCKDB_MAX_LINE = 2_097_152  # DuckDB's default max_line_size
_XLSX_ROW = "__xlsx_row__"
_ROW = "__sp_row"  # the row number column of the inner select; not a vendor name

#: A file's columns as (label as written in the file, column name in DuckDB SQL).
Header = list[tuple[str, str]]


@dataclass(frozen=True)
class SourceDefaults:
    """What no export says, from the settings: the legal entity and currency of projects
    (and time entries) that neither the row, the header nor a mapping's project defaults
    give. None: nothing is assumed, the row is quarantined (never a silent default)."""

    legal_entity: str | None = None
    currency: str | None = None


@dataclass(frozen=True)
class FileFormat:
    """How a source writes its files. Defaults are the canonical format."""

    encoding: str = "utf-8"
    delimiter: str = ","
    decimal_comma: bool = False  # CSV only: "1.234,50" means 1234.50
    sheet: str | None = None  # XLSX: sheet name; None = first sheet
    header_row: int = 1  # XLSX: row holding the header (1-based)
    mapping: SourceMapping | None = None  # vendor columns -> canonical; None = canonical file
    limits: FileLimits = FileLimits()  # what one file may hold (rows, cell, inflated size)
    #: More vendor mappings (several vendors in one inbox, each taking its own file names).
    mappings: tuple[SourceMapping, ...] = ()
    defaults: SourceDefaults = SourceDefaults()

    @property
    def all_mappings(self) -> tuple[SourceMapping, ...]:
        return ((self.mapping,) if self.mapping else ()) + self.mappings

    def source_mapping_for(self, dataset: str, file_name: str | None = None):
        """(the vendor mapping, its dataset rules) that read this file, or (None, None).

        A mapping whose dataset names `files` takes the files matching them; a file named
        `<dataset>*` is read by the first mapping that maps the dataset, and as canonical
        when none does (master data beside a vendor's time export)."""
        for m in self.all_mappings:
            dm = m.for_dataset(dataset)
            if dm is not None and dm.files and file_name is not None and dm.takes(file_name):
                return m, dm
        for m in self.all_mappings:
            dm = m.for_dataset(dataset)
            if dm is not None:
                return m, dm
        return None, None

    @property
    def has_archives(self) -> bool:
        return any(m.archive is not None for m in self.all_mappings)

    def archive_for(self, file_name: str):
        """The `[archive]` of the mapping that takes this ZIP export, or None."""
        for m in self.all_mappings:
            if m.archive is not None and m.archive.takes(file_name):
                return m.archive
        return None

    def mapping_for(self, dataset: str, file_name: str | None = None) -> DatasetMapping | None:
        return self.source_mapping_for(dataset, file_name)[1]

    def dataset_of(self, file_name: str) -> str | None:
        """The dataset of a file name: a mapping's `files` globs, else `<dataset>*`."""
        from connectors.sources.base import dataset_of

        return dataset_of(file_name, self.classify)

    def classify(self, file_name: str) -> str | None:
        """The dataset whose vendor `files` globs take this name, if any."""
        for m in self.all_mappings:
            found = m.dataset_of(file_name)
            if found is not None:
                return found
        return None

    def for_file(self, dataset: str, file_name: str) -> FileFormat:
        """This format with the reading mapping's own `[format]` settings applied."""
        _, dm = self.source_mapping_for(dataset, file_name)
        if dm is None:
            return replace(self, mapping=None, mappings=())
        m, _ = self.source_mapping_for(dataset, file_name)
        return replace(self, mapping=m, mappings=(), **dm.fmt.overrides())


def _is_utf8(encoding: str) -> bool:
    try:
        return codecs.lookup(encoding).name in {"utf-8", "utf-8-sig"}
    except LookupError:
        raise FileFormatError(f"unknown encoding {encoding!r}") from None


def transcode_to_utf8(path: Path, encoding: str, dest: Path) -> Path:
    """Stream a legacy-encoded file (cp1252, latin-1, utf-16...) into UTF-8, chunk by chunk.

    Memory is one chunk whatever the file size; gzip input is decompressed on the fly.
    Undecodable bytes are an error naming the byte offset, never silently replaced.
    """
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    with _open_maybe_gzip(path) as src, open(dest, "w", encoding="utf-8", newline="") as out:
        while chunk := src.read(_CODEC_CHUNK):
            try:
                out.write(decoder.decode(chunk))
            except UnicodeDecodeError as e:
                raise FileFormatError(
                    f"{path.name}: byte {offset + e.start} is not valid {encoding}"
                ) from None
            offset += len(chunk)
        try:
            out.write(decoder.decode(b"", final=True))
        except UnicodeDecodeError:
            raise FileFormatError(f"{path.name}: ends inside a {encoding} character") from None
    return dest


def _open_maybe_gzip(path: Path) -> BinaryIO:
    return csv_diagnose.open_bytes(path)


def _map_columns(path: Path, dataset: Dataset, header: Header) -> dict[str, str]:
    """Canonical column -> SQL column name; refuses a file missing a required column."""
    by_norm: dict[str, str] = {}
    for label, name in header:
        n = normalise_header(label)
        if n in by_norm:
            raise FileFormatError(f"{path.name}: column {n!r} appears twice in the header")
        by_norm[n] = name
    missing = [c.name for c in dataset.columns if c.required and c.name not in by_norm]
    if missing:
        raise FileFormatError(
            f"{path.name}: missing column(s) {', '.join(missing)} for dataset {dataset.name}"
        )
    return {c.name: by_norm[c.name] for c in dataset.columns if c.name in by_norm}


def _decimal_comma_sql(expr: str) -> str:
    """`1.234,50`, `1 234,50` and `7,5` → `1234.50`, `1234.50`, `7.5` (set-based, in SQL).

    Group separators are dropped only when the digits really are grouped by three,
    so a stray `7.5` in a decimal-comma file stays 7.5.
    """
    t = f"trim({expr})"
    grouped = "[+-]?[0-9]{1,3}([. \u00a0\u202f][0-9]{3})+(,[0-9]*)?"
    return (
        f"CASE WHEN regexp_full_match({t}, '{grouped}') "
        f"THEN replace(regexp_replace({t}, '[. \u00a0\u202f]', '', 'g'), ',', '.') "
        f"ELSE replace({expr}, ',', '.') END"
    )


def project_default_sql(
    project_sql: str, field: str, mapping: SourceMapping | None, setting: str | None
) -> str | None:
    """SQL of a project's default `field` (legal_entity, currency, customer_id): the first
    of the mapping's `[[project_defaults]]` whose glob matches the project code, else the
    setting; None when there is no default at all."""
    whens = [
        f"WHEN {project_sql} GLOB {sql_literal(d.projects)} THEN {sql_literal(getattr(d, field))}"
        for d in (mapping.project_defaults if mapping else ())
        if getattr(d, field) is not None
    ]
    other = sql_literal(setting) if setting else "CAST(NULL AS VARCHAR)"
    if not whens:
        return other if setting else None
    return f"CASE {' '.join(whens)} ELSE {other} END"


def _apply_defaults(dataset: str, exprs: dict[str, str], fmt: FileFormat) -> None:
    """What a vendor's file cannot say, filled in where the row is empty: a time entry's or
    project's currency, a project's legal entity and customer (the mapping's
    `[[project_defaults]]`, then the settings), an employee's legal entity (the setting); a
    vendor's projects export has no status or billing method: open, time and materials.
    Nothing is filled without a default: the row is quarantined, never guessed."""
    d = fmt.defaults
    fills: dict[str, str | None] = {}
    if dataset in ("time_entries", "projects") and "project_code" in exprs:
        code = exprs["project_code"]
        fills["currency"] = project_default_sql(code, "currency", fmt.mapping, d.currency)
        if dataset == "projects":
            fills["legal_entity"] = project_default_sql(
                code, "legal_entity", fmt.mapping, d.legal_entity
            )
            fills["customer_id"] = project_default_sql(code, "customer_id", fmt.mapping, None)
            fills["status"] = "'open'"
            fills["billing_method"] = "'time_and_materials'"
    elif dataset == "employees" and d.legal_entity:
        fills["legal_entity"] = sql_literal(d.legal_entity)
    for column, default in fills.items():
        if default is not None:
            own = exprs.get(column, "CAST(NULL AS VARCHAR)")
            exprs[column] = f"coalesce(NULLIF(trim({own}), ''), {default})"


def _column_exprs(
    path: Path,
    dataset: Dataset,
    header: Header,
    mapping: DatasetMapping | None,
    decimal_comma: bool,
    *,
    fmt: FileFormat | None = None,
    file_time: str | None = None,
) -> list[str]:
    """`<expr> AS <canonical>` for every canonical column, in canonical order."""
    if mapping is not None:
        try:
            exprs = mapping.column_sql(header, path.name, _ROW, file_time=file_time)
        except MappingError as e:
            raise FileFormatError(str(e)) from None
        if fmt is not None:
            _apply_defaults(dataset.name, exprs, fmt)
    else:
        found = _map_columns(path, dataset, header)
        exprs = {c: f"CAST({quote_ident(h)} AS VARCHAR)" for c, h in found.items()}
    out = []
    for c in dataset.columns:
        expr = exprs.get(c.name)
        if expr is None:
            out.append(f"CAST(NULL AS VARCHAR) AS {c.name}")
            continue
        if decimal_comma and c.is_decimal:
            expr = _decimal_comma_sql(expr)
        out.append(f"{expr} AS {c.name}")
    return out


def _create_view(
    con: duckdb.DuckDBPyConnection, view: str, source_sql: str, exprs: list[str], row_no_sql: str
) -> None:
    # The row number is taken in an inner select, in file order (DuckDB preserves insertion
    # order), so mapping expressions (identities, error messages) can use it.
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {', '.join(exprs)}, "
        f"CAST({_ROW} AS INTEGER) AS _row_no "
        f"FROM (SELECT *, {row_no_sql} AS {_ROW} FROM {source_sql}) AS __sp_src"
    )


def _csv_labels(path: Path, delimiter: str, names: list[str]) -> list[str]:
    """The header record exactly as written (one record, read with the csv module).

    DuckDB renames repeated names (`Notes`, `NOTES` -> `Notes`, `NOTES_1`), which would hide
    a duplicated column; matching uses what the file says. Falls back to DuckDB's names.
    """
    try:
        with (
            _open_maybe_gzip(path) as raw,
            io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text,
        ):
            labels = next(csv.reader(text, delimiter=delimiter, quotechar='"', strict=True))
    except (csv.Error, TypeError, UnicodeDecodeError, StopIteration, OSError):
        return names
    return labels


def _read_error(path: Path, name: str, fmt: FileFormat, is_csv: bool, e: Exception) -> Exception:
    """DuckDB's refusal of a file, explained by line and cause (CSV), never with paths or SQL."""
    if is_csv:
        return FileFormatError(csv_diagnose.explain(path, name, fmt.delimiter, fmt.limits, e))
    first = csv_diagnose.first_sentence(str(e), path)
    return FileFormatError(f"{name}: not a readable Parquet file ({first})")


def _describe(con: duckdb.DuckDBPyConnection, src: str) -> list[str]:
    return [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]


def _check_size(
    con: duckdb.DuckDBPyConnection, src: str, names: list[str], name: str, limits: FileLimits
) -> str | None:
    """One streaming DuckDB scan: refuse more rows than the limit; return the first row (header
    = row 1) holding a value over the cell limit, if any. Every parse error surfaces here, before
    anything lands."""
    lengths = [f"coalesce(strlen(CAST({quote_ident(n)} AS VARCHAR)), 0)" for n in names]
    widest = f"greatest({', '.join(lengths)})" if len(lengths) > 1 else lengths[0]
    rows, big = con.execute(
        f"SELECT count(*), max({widest}) FROM (SELECT * FROM {src} LIMIT {limits.max_rows + 1})"
    ).fetchone()  # type: ignore[misc]
    if rows > limits.max_rows:
        raise limits.rows_error(name)
    if big is not None and big > limits.max_cell_bytes:
        row = con.execute(
            f"SELECT min(_r) FROM (SELECT row_number() OVER () + 1 AS _r, {widest} AS _w "
            f"FROM {src}) WHERE _w > {limits.max_cell_bytes}"
        ).fetchone()[0]  # type: ignore[index]
        return f"row {row}"
    return None


def open_raw(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    dataset: Dataset,
    fmt: FileFormat | None = None,
    *,
    workdir: Path,
    view: str = "raw_src",
    file_name: str | None = None,
    mapping_override: DatasetMapping | None = None,
) -> str:
    """Expose `path` as a view of canonical text columns on `con`; returns the view name.

    A legacy-encoded CSV is transcoded into `workdir` first; the caller removes that copy
    after the view has been read.
    """
    fmt = (fmt or FileFormat()).for_file(dataset.name, file_name or path.name)
    mapping = mapping_override or fmt.mapping_for(dataset.name, file_name or path.name)
    shown = path.name  # the name messages use, even once a transcoded copy is read
    file_time = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
    name = path.name.lower()
    if name.endswith(".xlsx"):
        check_xlsx(path, fmt.limits)
        types = mapping.source_types() if mapping else {c.name: c.type for c in dataset.columns}
        table, labels = _read_xlsx(path, dataset, fmt, types)
        con.register(f"{view}_arrow", table)
        header = list(zip(labels, table.column_names[1:], strict=True))
        exprs = _column_exprs(path, dataset, header, mapping, False, fmt=fmt, file_time=file_time)
        _create_view(con, view, f"{view}_arrow", exprs, _XLSX_ROW)
        return view
    if name.endswith(".parquet"):
        src = f"read_parquet({sql_literal(str(path))})"
        is_csv = False
    elif name.endswith((".csv", ".csv.gz", ".txt", ".tsv")):
        utf8 = _is_utf8(fmt.encoding)
        csv_diagnose.prescan(path, shown, fmt.limits, nul_is_error=utf8)
        if not utf8:
            workdir.mkdir(parents=True, exist_ok=True)
            path = transcode_to_utf8(path, fmt.encoding, workdir / (path.name + ".utf8.csv"))
            csv_diagnose.prescan(path, shown, fmt.limits, nul_is_error=True)
        # A line may hold several values at the cell limit; DuckDB must not refuse it first.
        max_line = max(_DUCKDB_MAX_LINE, 4 * fmt.limits.max_cell_bytes)
        src = (
            f"read_csv({sql_literal(str(path))}, header=true, all_varchar=true, "
            f"delim={sql_literal(fmt.delimiter)}, quote='\"', escape='\"', "
            "strict_mode=true, null_padding=false, "
            f"max_line_size={max_line}, compression='auto')"
        )
        is_csv = True
    else:
        raise FileFormatError(f"{path.name}: unsupported file type")
    try:
        names = _describe(con, src)
        labels = _csv_labels(path, fmt.delimiter, names) if is_csv else names
        if len(labels) != len(names):  # DuckDB's sniffer gave up on the header: find out why
            raise duckdb.InvalidInputException("the header record could not be read")
        too_big = _check_size(con, src, names, shown, fmt.limits)
    except duckdb.Error as e:
        raise _read_error(path, shown, fmt, is_csv, e) from None
    if too_big:
        # The csv module counts physical lines as the file does; DuckDB's row is a record.
        where = csv_diagnose.records(path, shown, fmt.delimiter, fmt.limits) if is_csv else None
        raise FileFormatError(where) if where else fmt.limits.cell_error(shown, too_big)
    header = list(zip(labels, names, strict=True))
    exprs = _column_exprs(
        path, dataset, header, mapping, is_csv and fmt.decimal_comma, fmt=fmt, file_time=file_time
    )
    _create_view(con, view, src, exprs, "row_number() OVER () + 1")
    return view


def close_raw(con: duckdb.DuckDBPyConnection, view: str) -> None:
    """Drop what `open_raw` created on `con` (the view, and an XLSX sheet's Arrow table)."""
    con.execute(f"DROP VIEW IF EXISTS {view}")
    con.unregister(f"{view}_arrow")


def _cell_text(value: object, col_type: str, epoch: datetime) -> str | None:
    """One XLSX cell as canonical text (dates ISO, numbers exact, Excel serials converted).

    A number in a date column is an Excel serial date (days since the workbook's epoch:
    1899-12-30 normally, 1904-01-01 for workbooks from old Mac Excel); its time of day,
    if any, is dropped. A serial out of Excel's range stays a number for typing to report.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if col_type == "date":
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, int | float):
        if col_type == "date":
            from openpyxl.utils.datetime import from_excel

            try:
                serial = from_excel(value, epoch=epoch)
            except (ValueError, OverflowError):
                serial = None
            if isinstance(serial, datetime):
                return serial.date().isoformat()
        if isinstance(value, int) or float(value).is_integer():
            return str(int(value))
        # repr is the shortest text that round-trips: what Excel wrote in the XML.
        return format(Decimal(repr(value)), "f")
    return str(value)


def _unique(names: list[str]) -> list[str]:
    """Header names made unique (`Notes`, `Notes (2)`): an Arrow table keyed by name must
    not silently drop a column."""
    seen: dict[str, int] = {}
    out = []
    for i, h in enumerate(names):
        base = h or f"column_{i + 1}"
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base} ({seen[base]})")
    return out


def _read_xlsx(
    path: Path,
    dataset: Dataset,
    fmt: FileFormat,
    types: Mapping[str, str] | None = None,
) -> tuple[pa.Table, list[str]]:
    """The sheet as an Arrow table of strings plus each record's row number, and the header as
    written (the table's names are made unique).

    `types` maps a normalised header to its canonical type (default: the dataset's own
    columns), so numbers in date columns are read as Excel serial dates. This reads cell
    by cell (openpyxl streams the sheet), into Arrow batches of `_XLSX_BATCH` rows, so
    Python holds one batch; the row and cell limits are checked per batch, and reading
    stops at the first row over the row limit.
    """
    from openpyxl import load_workbook

    if fmt.header_row < 1:
        raise FileFormatError(f"{path.name}: header_row must be 1 or more")
    types = types if types is not None else {c.name: c.type for c in dataset.columns}
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # noqa: BLE001 - openpyxl raises many kinds for a broken file
        raise FileFormatError(f"{path.name}: not a readable XLSX workbook ({e})") from None
    try:
        if fmt.sheet is not None and fmt.sheet not in wb.sheetnames:
            raise FileFormatError(
                f"{path.name}: no sheet named {fmt.sheet!r} (sheets: {', '.join(wb.sheetnames)})"
            )
        ws = wb[fmt.sheet] if fmt.sheet else wb.worksheets[0]
        rows = ws.iter_rows(min_row=fmt.header_row, values_only=True)
        try:
            header = [("" if h is None else str(h).strip()) for h in next(rows)]
        except StopIteration:
            raise FileFormatError(
                f"{path.name}: no header at row {fmt.header_row} of sheet {ws.title!r}"
            ) from None
        col_types = [types.get(normalise_header(h), "text") for h in header]
        names = [_XLSX_ROW, *_unique(header)]
        width = len(header)
        limits = fmt.limits
        batches: list[pa.RecordBatch] = []
        columns: list[list[str | None]] = [[] for _ in range(width)]
        row_numbers: list[int] = []
        count = 0
        epoch = wb.epoch
        for row_no, row in enumerate(rows, start=fmt.header_row + 1):
            if row is None or all(v is None for v in row):
                continue  # blank rows are layout, not records; row numbers stay true
            count += 1
            if count > limits.max_rows:
                raise limits.rows_error(path.name)
            row_numbers.append(row_no)
            for i in range(width):
                columns[i].append(_cell_text(row[i] if i < len(row) else None, col_types[i], epoch))
            if len(row_numbers) == _XLSX_BATCH:
                batches.append(_xlsx_batch(path.name, names, row_numbers, columns, limits))
                columns, row_numbers = [[] for _ in range(width)], []
        batches.append(_xlsx_batch(path.name, names, row_numbers, columns, limits))
    finally:
        wb.close()
    return pa.Table.from_batches(batches), header


def _xlsx_batch(
    name: str,
    names: list[str],
    row_numbers: list[int],
    columns: list[list[str | None]],
    limits: FileLimits,
) -> pa.RecordBatch:
    """One batch of sheet rows as Arrow strings; refuses a value over the cell limit, naming
    its sheet row (vectorised: one length kernel per column)."""
    rows = pa.array(row_numbers, type=pa.int32())
    arrays = [pa.array(col, type=pa.string()) for col in columns]
    for arr in arrays:
        over = pc.greater(pc.binary_length(arr), limits.max_cell_bytes)
        if pc.any(over).as_py():
            first = pc.index(over, True).as_py()
            raise limits.cell_error(name, f"row {row_numbers[first]}")
    return pa.RecordBatch.from_arrays([rows, *arrays], names=names)
