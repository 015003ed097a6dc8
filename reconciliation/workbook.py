"""The controllers' reconciliation workbook: a summary sheet plus one sheet per exception class.

Written with openpyxl in write-only mode, so memory stays bounded by one chunk of
rows whatever the sheet size. Every column gets one Excel type and number format,
decided once (see `reports.xlsx_columns`); strings are always written as text, never as
formulas, and a sheet longer than Excel allows is split into parts that the summary
names, never cut.

Summary layout (column A holds the section titles, one blank row between sections):
title; "Period" | the period (when given); "Generated at" | timestamp; "Key figures" (Metric | Value); "Notes" (only when
there are any: the caller's, then splits and text fixes); "Totals" (the caller's
frame, non-zero variance/diff/delta cells in bold red); "Aging (days open)" (bucket |
hours | amount, or one `amount <currency>` column per currency, for 0-1, 2-7, 8-30, >30,
with two bar charts to its right); "Sheets"
(sheet | source | rows).

Column headers are the caller's display names (`headers`: "PSA hours", not `psa_hours`); the
kind of each column (money, hours, ...) is still decided from its own name. Every sheet prints
landscape, fitted to the page width, a detail sheet's header row repeated on every page.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pyarrow as pa
from openpyxl.cell import WriteOnlyCell
from openpyxl.chart import BarChart, Reference
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from openpyxl.worksheet.properties import PageSetupProperties

from reports.xlsx_columns import (
    NUMBER_FORMATS,
    Column,
    ColumnPlan,
    Kind,
    RiskyText,
    TextIssues,
    plan_column,
    slice_column,
    text_cell,
)

EXCEL_MAX_ROWS = 1_048_576  # including the header row
EXCEL_MAX_COLUMNS = 16_384
SUMMARY_SHEET = "Summary"
AGING_BUCKETS: tuple[str, ...] = ("0-1", "2-7", "8-30", ">30")
CHUNK_ROWS = 20_000  # rows converted at a time: bounds memory, amortises the vectorised work
_WIDTH_SAMPLE_ROWS = 200
_MIN_WIDTH, _MAX_WIDTH = 6.0, 60.0

_HEADER_FONT = Font(bold=True)
_HEADER_FILL = PatternFill(fill_type="solid", start_color="FFD9E1F2", end_color="FFD9E1F2")
_TITLE_FONT = Font(bold=True, size=14)
_SECTION_FONT = Font(bold=True, size=12)
_VARIANCE_FONT = Font(bold=True, color="FFC00000")
_VARIANCE_NAME = re.compile(r"variance|diff|delta", re.IGNORECASE)
_INVALID_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")
_RESERVED_SHEET_NAMES = frozenset({"history"})  # Excel reserves "History"


def _supports_fast_rows() -> bool:
    """openpyxl 3.1 builds each appended row in `WriteOnlyWorksheet._values_to_row`; see
    `_RowWriter`. On another openpyxl line we fall back to the public `ws.append` path."""
    return openpyxl.__version__.startswith("3.1.") and hasattr(WriteOnlyWorksheet, "_values_to_row")


# Module switch (tests run both paths): replace openpyxl's per-cell type inference for data rows.
FAST_ROWS: bool = _supports_fast_rows()


@dataclass(frozen=True)
class SheetChart:
    """A column chart beside a detail sheet's table: one series per value column (clustered,
    never stacked), the categories from another column, all rows of the sheet."""

    title: str
    categories: str  # column name
    values: tuple[str, ...]  # column names, one series each
    y_format: str = "#,##0"


@dataclass(frozen=True)
class WorkbookInfo:
    """What was written: sheet names in order, data rows per detail sheet, splits and notes."""

    path: Path
    sheet_names: list[str]
    rows: dict[str, int]  # detail sheet name -> data rows below its header
    split_sheets: dict[str, list[str]]  # key in `sheets` -> its part sheet names, if split
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- sheet names


class _SheetNames:
    """Excel sheet names: at most 31 chars, none of []:*?/\\, no edge quote, unique ignoring case."""

    def __init__(self) -> None:
        self._used: set[str] = set(_RESERVED_SHEET_NAMES)

    def base(self, raw: object) -> str:
        name = _INVALID_SHEET_CHARS.sub("_", str(raw)).strip().strip("'").strip()
        return name or "Sheet"

    def take(self, base: str, suffix: str = "") -> str:
        n = 1
        while True:
            extra = suffix if n == 1 else f"{suffix} ({n})"
            name = base[: 31 - len(extra)].rstrip(" '") + extra
            if name.casefold() not in self._used:
                self._used.add(name.casefold())
                return name
            n += 1


# --------------------------------------------------------------------------- frames


def _frame_columns(data: pd.DataFrame | pa.Table) -> tuple[list[str], list[Column], int]:
    """Column names, columns and row count; a named pandas index becomes leading columns."""
    if not isinstance(data, pd.DataFrame | pa.Table):
        raise TypeError(f"sheet data must be a pandas DataFrame or pyarrow Table, not {type(data)}")
    if isinstance(data, pd.DataFrame) and any(name is not None for name in data.index.names):
        data = data.reset_index()
    if data.shape[1] > EXCEL_MAX_COLUMNS:  # rows are split, columns cannot be: refuse, never cut
        raise ValueError(f"{data.shape[1]:,} columns: an Excel sheet holds {EXCEL_MAX_COLUMNS:,}")
    if isinstance(data, pa.Table):
        return [str(c) for c in data.column_names], list(data.columns), data.num_rows
    cols = [data.iloc[:, i] for i in range(data.shape[1])]  # by position: names may repeat
    return [str(c) for c in data.columns], cols, len(data)


def _plans(names: Sequence[str], cols: Sequence[Column]) -> list[ColumnPlan]:
    return [plan_column(n, c) for n, c in zip(names, cols, strict=True)]


def _convert(plans: Sequence[ColumnPlan], cols: Sequence[Column], start: int, stop: int):
    return [p.convert(slice_column(c, start, stop)) for p, c in zip(plans, cols, strict=True)]


def _display_len(kind: Kind, value: Any) -> int:
    if kind is Kind.TEXT:
        return max(map(len, str(value).splitlines() or [""]))
    if kind is Kind.MONEY:
        return len(f"{value:,.2f}")
    if kind is Kind.HOURS:
        return len(f"{value:.2f}")
    if kind is Kind.RATE:
        return len(f"{value:.8f}".rstrip("0"))
    if kind is Kind.INT:
        return len(str(value))
    return {Kind.DATE: 10, Kind.DATETIME: 16, Kind.BOOL: 5}[kind]


def _widths(
    plans: Sequence[ColumnPlan], cols: Sequence[Column], n: int, titles: Sequence[str]
) -> list[float]:
    """Widths from the header and the first rows only: scanning every row costs a full pass."""
    sample = _convert(plans, cols, 0, min(n, _WIDTH_SAMPLE_ROWS))
    widths = []
    for plan, title, values in zip(plans, titles, sample, strict=True):
        lens = [_display_len(plan.kind, v) for v in values if v is not None]
        need = max([len(title) + 4, *(x + 2 for x in lens)])  # +4: the filter button
        widths.append(min(max(float(need), _MIN_WIDTH), _MAX_WIDTH))
        plan.issues = TextIssues()  # the sample is converted again when written; count once
    return widths


# --------------------------------------------------------------------------- cells and rows


def _value_cell(
    ws: WriteOnlyWorksheet, value: Any, kind: Kind, number_format: str | None = None
) -> WriteOnlyCell | None:
    if value is None:
        return None
    if kind is Kind.TEXT:
        return text_cell(ws, value)
    cell = WriteOnlyCell(ws, value=value)
    fmt = number_format or NUMBER_FORMATS[kind]
    if fmt:
        cell.number_format = fmt
    return cell


def _titles(names: Iterable[str], headers: Mapping[str, str]) -> list[str]:
    """Each column's header: its display name, else its own name."""
    return [headers.get(name, name) for name in names]


def _print_setup(ws: WriteOnlyWorksheet, header_rows: str | None = None) -> None:
    """Landscape, as wide as one page (as many pages down as it takes), header rows repeated:
    printed, a sheet keeps its columns together instead of cutting them across pages."""
    ws.page_setup.orientation = "landscape"
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    if header_rows:
        ws.print_title_rows = header_rows


def _header_cells(ws: WriteOnlyWorksheet, names: Iterable[str]) -> list[WriteOnlyCell]:
    cells = []
    for name in names:
        cell = text_cell(ws, name, _HEADER_FONT)
        cell.fill = _HEADER_FILL
        cells.append(cell)
    return cells


class _RowWriter:
    """Appends rows of ready values (one Excel type per column) to a write-only sheet.

    One reusable cell per column carries the column's style and data type. openpyxl
    consumes an appended row fully before `append` returns, so reuse is safe. Fast
    path: the sheet's `_values_to_row` (openpyxl 3.1, private) is replaced by a
    generator that only sets value and row on those cells, so no cell is typed, styled
    or allocated per value, and a string cell is always `data_type = "s"`. Public path:
    the same cells go through `ws.append`, with `value` then `data_type = "s"` set.
    """

    def __init__(self, ws: WriteOnlyWorksheet, plans: Sequence[ColumnPlan], fast: bool) -> None:
        self.ws = ws
        self.cells: list[WriteOnlyCell] = []
        self.risky: list[WriteOnlyCell] = []
        self.types = [p.data_type for p in plans]
        for idx, plan in enumerate(plans, 1):
            cell = self._cell(idx, plan)
            self.cells.append(cell)
            if plan.kind is Kind.TEXT:
                risky = self._cell(idx, plan)
                risky.quotePrefix = True
                self.risky.append(risky)
            else:
                self.risky.append(cell)
        self.append: Callable[[Sequence[Any]], None]
        if fast:
            ws._values_to_row = self._values_to_row
            self.append = ws.append
        else:
            self.append = self._append_public

    def _cell(self, idx: int, plan: ColumnPlan) -> WriteOnlyCell:
        cell = WriteOnlyCell(self.ws)
        if plan.number_format:
            cell.number_format = plan.number_format
        cell.data_type = plan.data_type
        cell.column = idx
        return cell

    def _values_to_row(self, values: Sequence[Any], row_idx: int):
        # Rows come from zipped columns: lengths match by construction, skip the strict check.
        for cell, risky, value in zip(self.cells, self.risky, values, strict=False):
            if value is None:
                continue
            if value.__class__ is RiskyText:
                cell = risky
            cell._value = value
            cell.row = row_idx
            yield cell

    def _append_public(self, values: Sequence[Any]) -> None:
        row: list[WriteOnlyCell | None] = []
        for cell, risky, data_type, value in zip(
            self.cells, self.risky, self.types, values, strict=True
        ):
            if value is None:
                row.append(None)
                continue
            if value.__class__ is RiskyText:
                cell = risky
            cell.value = value
            cell.data_type = data_type
            row.append(cell)
        self.ws.append(row)


# --------------------------------------------------------------------------- detail sheets


@dataclass
class _Written:
    headers: Mapping[str, str] = field(default_factory=dict)
    sheet_names: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    split: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _detail_chart(
    ws: WriteOnlyWorksheet, chart_spec: SheetChart, col_names: list[str], rows: int
) -> None:
    """`chart_spec` over the sheet's rows, anchored two columns right of the table."""
    cats = col_names.index(chart_spec.categories) + 1
    chart = BarChart()
    chart.type = "col"
    chart.grouping = "clustered"
    chart.title = chart_spec.title
    for name in chart_spec.values:
        col = col_names.index(name) + 1
        chart.add_data(
            Reference(ws, min_col=col, max_col=col, min_row=1, max_row=rows + 1),
            titles_from_data=True,
        )
    chart.set_categories(Reference(ws, min_col=cats, min_row=2, max_row=rows + 1))
    chart.y_axis.number_format = chart_spec.y_format
    chart.x_axis.delete = False  # openpyxl 3.1 otherwise hides both axes in Excel
    chart.y_axis.delete = False
    chart.width, chart.height = 24, 10
    ws.add_chart(chart, f"{get_column_letter(len(col_names) + 2)}2")


def _write_detail(
    wb: openpyxl.Workbook,
    key: str,
    frame: tuple[list[str], list[Column], int],
    names: _SheetNames,
    max_rows: int,
    fast: bool,
    out: _Written,
    chart: SheetChart | None = None,
) -> None:
    col_names, cols, n = frame
    plans = _plans(col_names, cols)
    titles = _titles(col_names, out.headers)
    widths = _widths(plans, cols, n, titles)
    base = names.base(key)
    ranges = [(a, min(a + max_rows, n)) for a in range(0, n, max_rows)] or [(0, 0)]
    parts = []
    for part, (start, stop) in enumerate(ranges, 1):
        title = names.take(base) if part == 1 else names.take(base, f" ({part})")
        parts.append(title)
        ws = wb.create_sheet(title)
        _setup_detail(ws, widths, stop - start)
        if chart is not None and len(ranges) == 1 and n:
            _detail_chart(ws, chart, col_names, n)
        ws.append(_header_cells(ws, titles) or ["(no columns)"])
        if plans:
            writer = _RowWriter(ws, plans, fast)
            for a in range(start, stop, CHUNK_ROWS):
                for row in zip(*_convert(plans, cols, a, min(a + CHUNK_ROWS, stop)), strict=True):
                    writer.append(row)
        out.sheet_names.append(title)
        out.rows[title] = stop - start
    if len(parts) > 1:
        out.split[key] = parts
        out.notes.append(
            f"Sheet '{key}' has {n:,} rows, more than {max_rows:,} per sheet: "
            f"split into {len(parts)} parts: {', '.join(parts)}."
        )
    for plan in plans:
        if plan.issues.cut:
            out.notes.append(
                f"Sheet '{key}', column '{out.headers.get(plan.name, plan.name)}': "
                f"{plan.issues.cut:,} values longer than "
                f"32,767 characters (Excel's cell limit) were cut."
            )
        if plan.issues.control_chars:
            out.notes.append(
                f"Sheet '{key}', column '{out.headers.get(plan.name, plan.name)}': "
                f"{plan.issues.control_chars:,} values had "
                f"control characters Excel cannot store; they were replaced with U+FFFD."
            )


def _setup_detail(ws: WriteOnlyWorksheet, widths: Sequence[float], rows: int) -> None:
    """Everything openpyxl writes before the rows (views, columns) must be set first."""
    _print_setup(ws, "1:1")
    if not widths:
        return
    for idx, width in enumerate(widths, 1):
        ws.column_dimensions[get_column_letter(idx)].width = width
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(widths))}{rows + 1}"


# --------------------------------------------------------------------------- summary


def _amount_columns(aging: pd.DataFrame) -> list[str]:
    """`amount`, or one `amount <currency>` column per currency."""
    return [c for c in aging.columns if c == "amount" or str(c).startswith("amount ")]


def _normalise_aging(aging: pd.DataFrame) -> pd.DataFrame:
    """The four buckets in order; a missing bucket is zero, an unknown one is an error."""
    missing = {"bucket", "hours"} - set(aging.columns)
    if missing:
        raise ValueError(
            f"aging needs columns bucket, hours and amounts; missing {sorted(missing)}"
        )
    buckets = aging["bucket"].astype(str)
    unknown = sorted(set(buckets) - set(AGING_BUCKETS))
    if unknown or buckets.duplicated().any():
        raise ValueError(f"aging buckets must be unique and among {AGING_BUCKETS}; got {unknown}")
    columns = ["hours", *_amount_columns(aging)]
    table = aging.set_index(buckets)[columns].reindex(list(AGING_BUCKETS)).fillna(0)
    return table.rename_axis("bucket").reset_index()


class _Summary:
    """Appends the summary sheet row by row, tracking the row number for chart references."""

    def __init__(self, ws: WriteOnlyWorksheet, headers: Mapping[str, str]) -> None:
        self.ws = ws
        self.headers = headers
        self.row = 0

    def append(self, cells: Sequence[Any] = ()) -> int:
        self.ws.append(list(cells))
        self.row += 1
        return self.row

    def section(self, title: str) -> None:
        if self.row:
            self.append()
        self.append([text_cell(self.ws, title, _SECTION_FONT)])

    def table(self, frame: pd.DataFrame, highlight_variance: bool = False) -> int:
        """Header plus rows of a small frame; returns the header's row number."""
        col_names, cols, n = _frame_columns(frame)
        plans = _plans(col_names, cols)
        header = self.append(_header_cells(self.ws, _titles(col_names, self.headers)))
        columns = _convert(plans, cols, 0, n)
        variance = [highlight_variance and bool(_VARIANCE_NAME.search(p.name)) for p in plans]
        for values in zip(*columns, strict=True):
            cells = []
            for plan, flag, value in zip(plans, variance, values, strict=True):
                fmt = "#,##0" if plan.kind is Kind.INT else None
                cell = _value_cell(self.ws, value, plan.kind, fmt)
                if flag and cell is not None and plan.data_type == "n" and value != 0:
                    cell.font = _VARIANCE_FONT
                cells.append(cell)
            self.append(cells)
        return header


def _kpi_cell(ws: WriteOnlyWorksheet, label: str, value: Any) -> WriteOnlyCell | None:
    plan = plan_column(label, pd.Series([value], dtype=object))
    (converted,) = plan.convert(pd.Series([value], dtype=object))
    return _value_cell(ws, converted, plan.kind, "#,##0" if plan.kind is Kind.INT else None)


def _aging_charts(ws: WriteOnlyWorksheet, header_row: int, amounts: int) -> None:
    """Two column charts (hours; amounts, a series per currency): one axis each, as their
    scales differ by ~100x. Currencies share the amount chart side by side, never stacked."""
    last = header_row + len(AGING_BUCKETS)
    cats = Reference(ws, min_col=1, min_row=header_row + 1, max_row=last)
    charts = [(2, 2, "Open hours by age (days)", "#,##0", "E")]
    if amounts:
        charts.append((3, 2 + amounts, "Open amount by age (days)", "#,##0", "N"))
    for col, last_col, title, fmt, anchor in charts:
        chart = BarChart()
        chart.type = "col"
        chart.title = title
        chart.legend = None if last_col == col else chart.legend
        chart.add_data(
            Reference(ws, min_col=col, max_col=last_col, min_row=header_row, max_row=last),
            titles_from_data=True,
        )
        chart.set_categories(cats)
        chart.y_axis.number_format = fmt
        chart.x_axis.delete = False  # openpyxl 3.1 otherwise hides both axes in Excel
        chart.y_axis.delete = False
        ws.add_chart(chart, f"{anchor}{header_row}")


def _write_summary(
    ws: WriteOnlyWorksheet,
    *,
    title: str,
    period: str | None,
    generated_at: datetime,
    kpis: Sequence[tuple[str, object]],
    totals: pd.DataFrame,
    aging: pd.DataFrame,
    notes: Sequence[str],
    written: _Written,
    sources: dict[str, str],
) -> None:
    _print_setup(ws)
    ws.column_dimensions["A"].width = 34
    for idx in range(2, max(totals.shape[1], 3) + 2):
        ws.column_dimensions[get_column_letter(idx)].width = 18
    out = _Summary(ws, written.headers)
    out.append([text_cell(ws, title, _TITLE_FONT)])
    if period:
        out.append([text_cell(ws, "Period"), text_cell(ws, period)])
    stamp = WriteOnlyCell(ws, value=generated_at)
    stamp.number_format = NUMBER_FORMATS[Kind.DATETIME]
    stamp.alignment = Alignment(horizontal="left")
    out.append([text_cell(ws, "Generated at"), stamp])

    out.section("Key figures")
    out.append(_header_cells(ws, ["Metric", "Value"]))
    for label, value in kpis:
        out.append([text_cell(ws, str(label)), _kpi_cell(ws, str(label), value)])

    if notes:
        out.section("Notes")
        for note in notes:
            out.append([text_cell(ws, note)])

    out.section("Totals")
    out.table(totals, highlight_variance=True)

    out.section("Aging (days open)")
    header_row = out.table(aging)
    _aging_charts(ws, header_row, len(_amount_columns(aging)))

    out.section("Sheets")
    listing = pd.DataFrame(
        {
            "sheet": written.sheet_names,
            "source": [sources[s] for s in written.sheet_names],
            "rows": [written.rows[s] for s in written.sheet_names],
        }
    )
    out.table(listing)


# --------------------------------------------------------------------------- entry point


def write_workbook(
    path: Path,
    *,
    title: str,
    kpis: list[tuple[str, object]],
    totals: pd.DataFrame,
    aging: pd.DataFrame,
    sheets: dict[str, pd.DataFrame | pa.Table],
    notes: list[str] | None = None,
    max_rows_per_sheet: int = EXCEL_MAX_ROWS - 1,
    generated_at: datetime | None = None,
    headers: Mapping[str, str] | None = None,
    period: str | None = None,
    charts: Mapping[str, SheetChart] | None = None,
) -> WorkbookInfo:
    """Write the reconciliation workbook to `path` (replaced atomically) and say what it holds.

    Summary first (title, generated-at, KPIs, notes, totals, aging table and charts,
    sheet list), then one sheet per `sheets` entry in order, split into `Name (2)`,
    `Name (3)`... past `max_rows_per_sheet` data rows. Money is `#,##0.00`, columns
    whose name contains "hour" `0.00`, integers `0`, dates `yyyy-mm-dd`, timestamps
    `yyyy-mm-dd hh:mm` (tz-aware ones in their own wall-clock time). `headers` maps column
    names to the headers shown (detail sheets and summary tables); `period` is shown under
    the title. `charts` puts a column chart beside the table of a detail sheet (by its key in
    `sheets`; not on a sheet that is split).
    """
    if not 1 <= max_rows_per_sheet <= EXCEL_MAX_ROWS - 1:
        raise ValueError(f"max_rows_per_sheet must be in 1..{EXCEL_MAX_ROWS - 1:,}")
    path = Path(path)
    stamp = generated_at or datetime.now()
    if stamp.tzinfo is not None:
        stamp = stamp.replace(tzinfo=None)
    stamp = stamp.replace(microsecond=0)

    # Check every input before the first sheet starts streaming.
    aging = _normalise_aging(aging)
    if not isinstance(totals, pd.DataFrame):
        raise TypeError(f"totals must be a pandas DataFrame, not {type(totals)}")
    frames = {key: _frame_columns(data) for key, data in sheets.items()}

    wb = openpyxl.Workbook(write_only=True)
    names = _SheetNames()
    # Created first so it is the first tab; its rows are written last, once the notes are known
    # (each write-only sheet streams to its own temporary file, in any order).
    summary = wb.create_sheet(names.take(SUMMARY_SHEET))
    written = _Written(headers=dict(headers or {}))
    sources: dict[str, str] = {}
    for key, frame in frames.items():
        before = len(written.sheet_names)
        _write_detail(
            wb,
            key,
            frame,
            names,
            max_rows_per_sheet,
            FAST_ROWS,
            written,
            (charts or {}).get(key),
        )
        sources.update({s: str(key) for s in written.sheet_names[before:]})

    all_notes = [*(notes or []), *written.notes]
    _write_summary(
        summary,
        title=title,
        period=period,
        generated_at=stamp,
        kpis=kpis,
        totals=totals,
        aging=aging,
        notes=all_notes,
        written=written,
        sources=sources,
    )

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        wb.save(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return WorkbookInfo(
        path=path,
        sheet_names=[summary.title, *written.sheet_names],
        rows=dict(written.rows),
        split_sheets=dict(written.split),
        notes=all_notes,
    )
