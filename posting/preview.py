"""What a posting window will post: a summary per legal entity, project and currency, and the
lines, as DataFrames and as an Excel workbook finance can read before saying yes.

Read from the plan's temporary tables (see `posting.plan`), so a dry run and a
real window show exactly the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from sqlalchemy.engine import Connection

from connectors.sql import read_frame
from reports.xlsx_columns import text_cell

#: Rows an xlsx sheet holds below its header.
SHEET_ROWS = 1_048_575
#: Lines written to the workbook's Lines sheet; the summary always covers every line.
DEFAULT_DETAIL_LIMIT = 20_000

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


def _safe(ws, value):
    """A cell value Excel shows as typed: text is stored as text (never a formula, control
    characters replaced) by the workbook writer's own `text_cell`."""
    if isinstance(value, str):
        return text_cell(ws, value)
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value


def _write_sheet(wb: Workbook, title: str, df: pd.DataFrame, notes: list[str]) -> None:
    ws = wb.create_sheet(title)
    bold = Font(bold=True)
    for note in notes:
        cell = WriteOnlyCell(ws, value=note)
        cell.font = bold
        ws.append([cell])
    header = []
    for name in df.columns:
        cell = WriteOnlyCell(ws, value=name)
        cell.font = bold
        header.append(cell)
    ws.append(header)
    for row in df.itertuples(index=False, name=None):
        ws.append([_safe(ws, v) for v in row])


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
