"""The posting preview workbook for people (#15): headers in words, amounts and hours with two
decimals (exact to the cent), text that stays text, and a print set-up (landscape, one page
wide, the header row repeated)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D
from pathlib import Path

import pandas as pd
from openpyxl import load_workbook

from posting.preview import HEADERS, write_preview_xlsx


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    summary = pd.DataFrame(
        {
            "document": ["time_line"],
            "legal_entity": ["DE01"],
            "project_code": ["P1"],
            "currency": ["EUR"],
            "state": ["planned"],
            "lines": [2],
            "posts": [2],
            "reversals": [0],
            "hours": [D("8.75")],
            "amount": [D("1234567.89")],
        }
    )
    detail = pd.DataFrame(
        {
            "document": ["time_line", "time_line"],
            "external_id": ["W1-TE1-1", "W1-TE2-1"],
            "kind": ["post", "post"],
            "document_id": ["TE1", "TE2"],
            "doc_date": [date(2026, 11, 2), date(2026, 11, 3)],
            "hours": [D("7.50"), D("1.25")],
            "amount": [D("0.10"), D("-0.07")],
            "description": ["=1+1", "plain"],
        }
    )
    return summary, detail


def test_headers_formats_and_print_set_up(tmp_path: Path) -> None:
    summary, detail = _frames()
    path = write_preview_xlsx(
        tmp_path / "p.xlsx", summary, detail, total_lines=3, heading="=Dry run W1 by =ana"
    )
    wb = load_workbook(path)
    s, lines = wb["Summary"], wb["Lines"]
    # Summary: heading, the cut note, then the header (row 3).
    assert s["A1"].value == "=Dry run W1 by =ana" and s["A1"].data_type == "s"
    assert [c.value for c in s[3]] == [HEADERS[c] for c in summary.columns]
    assert (s["J4"].value, s["J4"].number_format) == (1234567.89, "#,##0.00")
    assert (s["I4"].value, s["I4"].number_format) == (8.75, "0.00")
    header = [c.value for c in lines[2]]
    assert header[:4] == ["Document", "External id", "Post or reversal", "Entry or invoice"]
    assert not any("_" in h for h in header)
    row = {h: c for h, c in zip(header, lines[3], strict=True)}
    assert (row["Amount"].value, row["Amount"].number_format) == (0.1, "#,##0.00")
    assert row["Work or issue date"].number_format == "yyyy-mm-dd"
    assert row["Description"].data_type == "s" and row["Description"].quotePrefix
    assert _cents(lines.cell(4, header.index("Amount") + 1).value) == D("-0.07")
    for ws, header_row in ((s, 3), (lines, 2)):
        assert ws.page_setup.orientation == "landscape"
        assert (ws.page_setup.fitToWidth, ws.page_setup.fitToHeight) == (1, 0)
        assert ws.sheet_properties.pageSetUpPr.fitToPage
        assert ws.print_title_rows == f"${header_row}:${header_row}"


def _cents(value: float) -> D:
    """What a reader sees: the shortest decimal of the stored double, to the cent."""
    return D(repr(value)).quantize(D("0.01"))
