"""What a posting window will post: a summary per legal entity, project and currency, and the
lines, as DataFrames and as an Excel workbook finance can read before saying yes.

Read from the plan's temporary tables (see `posting.plan`), so a dry run and a
real window show exactly the same numbers. Headers are words, money and hours keep two
decimals, and each sheet prints landscape, one page wide, its header row on every page.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.worksheet.properties import PageSetupProperties
from sqlalchemy.engine import Connection

from connectors.sql import read_frame
from reports.xlsx_columns import NUMBER_FORMATS, Kind, text_cell

#: Rows an xlsx sheet holds below its header.
SHEET_ROWS = 1_048_575
#: Lines written to the workbook's Lines sheet; the summary always covers every line.
DEFAULT_DETAIL_LIMIT = 20_000

#: The headers finance reads, by column.
HEADERS: dict[str, str] = {
    "document": "Document",
    "external_id": "External id",
    "kind": "Post or reversal",
    "document_id": "Entry or invoice",
    "version": "Version",
    "legal_entity": "Legal entity",
    "project_code": "Project",
    "employee_id": "Employee or customer",
    "task_code": "Task",
    "doc_date": "Work or issue date",
    "period": "ERP period",
    "hours": "Hours",
    "amount": "Amount",
    "currency": "Currency",
    "description": "Description",
    "state": "State",
    "erp_message": "ERP message",
    "lines": "Lines",
    "posts": "Posts",
    "reversals": "Reversals",
}
#: Number formats by column: amounts and hours always show two decimals.
_FORMATS: dict[str, str | None] = {
    "amount": NUMBER_FORMATS[Kind.MONEY],
    "hours": NUMBER_FORMATS[Kind.HOURS],
    "doc_date": NUMBER_FORMATS[Kind.DATE],
}

#: From the plan's groups (`posting.plan`: lines counted and summed per document, legal
#: entity, project, currency, period, kind and state), not another scan of every line.
_SUMMARY_SQL = """
    SELECT document, legal_entity, project_code, currency, state,
           CAST(SUM(n) AS BIGINT) AS lines,
           CAST(SUM(CASE WHEN kind = 'post' THEN n ELSE 0 END) AS BIGINT) AS posts,
           CAST(SUM(CASE WHEN kind = 'reversal' THEN n ELSE 0 END) AS BIGINT) AS reversals,
           SUM(hours) AS hours, SUM(amount) AS amount
    FROM plan_groups GROUP BY document, legal_entity, project_code, currency, state
    ORDER BY 1, 2, 3, 4, 5
"""

_DETAIL_SQL = """
    SELECT * FROM (
        SELECT 'time_line' AS document, external_id, kind, entry_id AS document_id,
               entry_version AS version, legal_entity, project_code, employee_id, task_code,
               work_date AS doc_date, period, hours, amount, currency, description, state,
               erp_message
        FROM plan_lines
        UNION ALL
        SELECT 'invoice', external_id, kind, invoice_id, invoice_version, legal_entity,
               project_code, customer_id, NULL, issue_date, period, NULL, total_amount, currency,
               NULL, state, erp_message
        FROM plan_invoices
        UNION ALL
        SELECT 'expense_line', external_id, kind, expense_id, expense_version, legal_entity,
               project_code, employee_id, task_code, expense_date, period, NULL, amount, currency,
               description, state, erp_message
        FROM plan_expenses
    ) d ORDER BY document DESC, legal_entity, project_code, document_id, kind, external_id
    LIMIT :n
"""


def plan_summary(conn: Connection) -> pd.DataFrame:
    """Lines, posts, reversals, hours and amounts per document, legal entity, project, currency
    and state (planned or held). Hours and amounts are Decimal."""
    df = read_frame(conn, _SUMMARY_SQL)
    for c in ("lines", "posts", "reversals"):
        df[c] = df[c].astype("int64")
    return df


def plan_detail(conn: Connection, limit: int = DEFAULT_DETAIL_LIMIT) -> pd.DataFrame:
    return read_frame(conn, _DETAIL_SQL, {"n": int(limit)})


def _safe(ws, value, number_format: str | None = None):
    """A cell value Excel shows as typed: text is stored as text (never a formula, control
    characters replaced) by the workbook writer's own `text_cell`; a number or date gets its
    column's format (a Decimal is written as openpyxl writes it, its nearest double)."""
    if isinstance(value, str):
        return text_cell(ws, value)
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if number_format is None:
        return value
    cell = WriteOnlyCell(ws, value=value)
    cell.number_format = number_format
    return cell


def _print_setup(ws, header_row: int) -> None:
    """Landscape, one page wide, the header row repeated on every printed page."""
    ws.page_setup.orientation = "landscape"
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    ws.print_title_rows = f"{header_row}:{header_row}"


def _write_sheet(wb: Workbook, title: str, df: pd.DataFrame, notes: list[str]) -> None:
    ws = wb.create_sheet(title)
    _print_setup(ws, len(notes) + 1)
    bold = Font(bold=True)
    for note in notes:
        ws.append([text_cell(ws, note, bold)])
    ws.append([text_cell(ws, HEADERS.get(str(name), str(name)), bold) for name in df.columns])
    formats = [_FORMATS.get(str(name)) for name in df.columns]
    for row in df.itertuples(index=False, name=None):
        ws.append([_safe(ws, v, f) for v, f in zip(row, formats, strict=True)])


def write_preview_xlsx(
    path: Path,
    summary: pd.DataFrame,
    detail: pd.DataFrame,
    *,
    total_lines: int,
    heading: str,
) -> Path:
    """Summary and Lines sheets. When the plan has more lines than the Lines sheet shows, both
    sheets say so: a preview never drops lines silently."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = Workbook(write_only=True)
    shown = len(detail)
    cut = (
        [f"Lines sheet shows the first {shown:,} of {total_lines:,} lines; the summary covers all."]
        if shown < total_lines
        else []
    )
    _write_sheet(wb, "Summary", summary, [heading, *cut])
    chunks = [detail.iloc[i : i + SHEET_ROWS - 2] for i in range(0, max(shown, 1), SHEET_ROWS - 2)]
    for n, chunk in enumerate(chunks, start=1):
        _write_sheet(wb, "Lines" if n == 1 else f"Lines {n}", chunk, cut[:1])
    wb.save(path)
    return path
