"""The reconciliation workbook, checked by reopening the file with openpyxl and reading its XML."""

from __future__ import annotations

import re
import zipfile
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow as pa
import pytest

from reconciliation import workbook
from reconciliation.workbook import AGING_BUCKETS, WorkbookInfo, write_workbook

GENERATED = datetime(2026, 11, 20, 7, 45)
INJECTIONS = [
    '=HYPERLINK("http://x","y")',
    "=1+1",
    "+SUM(A1)",
    "-2+3",
    "@cmd",
    "\tTAB",
    "\rCR",
]


@pytest.fixture(params=[True, False], ids=["fast-rows", "public-append"])
def row_path(request, monkeypatch) -> bool:
    """Every detail-sheet test runs on both row writers (private hook and public ws.append)."""
    if request.param and not workbook._supports_fast_rows():
        pytest.skip("this openpyxl has no WriteOnlyWorksheet._values_to_row (fallback only)")
    monkeypatch.setattr(workbook, "FAST_ROWS", request.param)
    return request.param


def detail_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entry_id": [101, 102, 103],
            "employee": ["E001", "E002", None],
            "amount": [Decimal("1234.56"), Decimal("-0.01"), None],
            "approved_hours": [Decimal("7.50"), None, Decimal("0.25")],
            "work_date": [date(2026, 3, 2), None, date(2026, 3, 31)],
            "approved_at": [datetime(2026, 3, 2, 17, 5), datetime(2026, 3, 3, 9, 0), None],
        }
    )


def totals_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "legal_entity": ["LE-DE", "LE-US"],
            "currency": ["EUR", "USD"],
            "psa_amount": [Decimal("1000.10"), Decimal("250.00")],
            "erp_amount": [Decimal("1000.10"), Decimal("240.55")],
            "amount_variance": [Decimal("0.00"), Decimal("9.45")],
            "entries": [12, 3],
        }
    )


def aging_frame() -> pd.DataFrame:
    # ">30" first and "2-7" missing: the sheet shows the four buckets in order, 2-7 as zero.
    return pd.DataFrame(
        {
            "bucket": [">30", "0-1", "8-30"],
            "hours": [Decimal("40.00"), Decimal("3.50"), Decimal("12.25")],
            "amount": [Decimal("5200.00"), Decimal("420.00"), Decimal("1470.75")],
        }
    )


def write(path: Path, sheets: dict, **kw) -> WorkbookInfo:
    args = {
        "title": "Reconciliation 2026-11",
        "kpis": [("Entries checked", 1500), ("Amount variance", Decimal("9.45"))],
        "totals": totals_frame(),
        "aging": aging_frame(),
        "generated_at": GENERATED,
    }
    args.update(kw)
    return write_workbook(path, sheets=sheets, **args)


def sheet_xml(path: Path, index: int) -> str:
    """XML of the index-th sheet (1 = Summary); openpyxl names them sheet1.xml, sheet2.xml..."""
    with zipfile.ZipFile(path) as zf:
        return zf.read(f"xl/worksheets/sheet{index}.xml").decode()


def rows_below(ws, title: str) -> list[tuple]:
    """Values of the rows after the summary section titled `title`, up to the next blank row."""
    rows = list(ws.iter_rows(values_only=True))
    start = next(i for i, r in enumerate(rows) if r and r[0] == title)
    out = []
    for row in rows[start + 1 :]:
        if not any(v is not None for v in row):
            break
        out.append(row)
    return out


def as_decimal(value: float | int) -> Decimal:
    """What a controller sees: the shortest decimal of the stored double, exact to the cent."""
    return Decimal(repr(value)).quantize(Decimal("0.01"))


# --------------------------------------------------------------------------- summary


def test_summary_figures_cell_by_cell(tmp_path):
    path = tmp_path / "recon.xlsx"
    info = write(path, {"Missing in ERP": detail_frame()}, notes=["PSA export of 2026-11-19"])
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Summary", "Missing in ERP"] == info.sheet_names
    ws = wb["Summary"]
    assert ws["A1"].value == "Reconciliation 2026-11"
    assert ws["A1"].font.b
    assert (ws["A2"].value, ws["B2"].value) == ("Generated at", GENERATED)
    assert ws["B2"].number_format == "yyyy-mm-dd hh:mm"

    assert rows_below(ws, "Key figures") == [
        ("Metric", "Value", None, None, None, None),
        ("Entries checked", 1500, None, None, None, None),
        ("Amount variance", 9.45, None, None, None, None),
    ]
    assert rows_below(ws, "Notes") == [("PSA export of 2026-11-19",) + (None,) * 5]

    totals = rows_below(ws, "Totals")
    assert totals[0] == tuple(totals_frame().columns)
    for got, want in zip(totals[1:], totals_frame().itertuples(index=False), strict=True):
        assert got[:2] == want[:2]
        assert [as_decimal(v) for v in got[2:5]] == list(want[2:5])
        assert got[5] == want[5]

    aging = rows_below(ws, "Aging (days open)")
    assert [r[:3] for r in aging] == [
        ("bucket", "hours", "amount"),
        ("0-1", 3.5, 420),
        ("2-7", 0, 0),
        ("8-30", 12.25, 1470.75),
        (">30", 40, 5200),
    ]
    assert [r[0] for r in aging[1:]] == list(AGING_BUCKETS)
    assert rows_below(ws, "Sheets")[1][:3] == ("Missing in ERP", "Missing in ERP", 3)


def test_summary_formats_and_variance_highlight(tmp_path):
    path = tmp_path / "recon.xlsx"
    write(path, {"X": detail_frame()})
    ws = openpyxl.load_workbook(path)["Summary"]
    by_value = {c.value: c for row in ws.iter_rows() for c in row if c.value is not None}
    assert by_value[1500].number_format == "#,##0"
    assert by_value[9.45].number_format == "#,##0.00"
    totals_header = next(r for r in ws.iter_rows() if r[0].value == "legal_entity")
    assert all(c.font.b and c.fill.fgColor.rgb == "FFD9E1F2" for c in totals_header)
    le_us = next(r for r in ws.iter_rows() if r[0].value == "LE-US")
    le_de = next(r for r in ws.iter_rows() if r[0].value == "LE-DE")
    assert le_us[4].font.color.rgb == "FFC00000"  # non-zero variance stands out
    assert le_de[4].font.color is None or le_de[4].font.color.rgb != "FFC00000"
    aging_row = next(r for r in ws.iter_rows() if r[0].value == "8-30")
    assert (aging_row[1].number_format, aging_row[2].number_format) == ("0.00", "#,##0.00")


def test_aging_charts_present_and_point_at_the_aging_table(tmp_path):
    path = tmp_path / "recon.xlsx"
    write(path, {"X": detail_frame()})
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        chart1 = zf.read("xl/charts/chart1.xml").decode()
    assert {"xl/charts/chart1.xml", "xl/charts/chart2.xml"} <= names
    assert "barChart" in chart1
    ws = openpyxl.load_workbook(path)["Summary"]
    assert len(ws._charts) == 2
    header_row = next(r[0].row for r in ws.iter_rows() if r[0].value == "bucket")
    first, last = header_row + 1, header_row + 4
    assert f"'Summary'!$B${first}:$B${last}" in chart1 or f"Summary!$B${first}:$B${last}" in chart1
    assert f"$A${first}:$A${last}" in chart1


def test_aging_amounts_one_column_and_series_per_currency(tmp_path):
    """Amounts of several currencies are never added: a column (and a chart series) each."""
    aging = pd.DataFrame(
        {
            "bucket": list(AGING_BUCKETS),
            "hours": [Decimal("1.5000"), Decimal("0"), Decimal("2.2500"), Decimal("0")],
            "amount EUR": [Decimal("13376.25"), Decimal("0"), Decimal("0"), Decimal("0")],
            "amount USD": [Decimal("0"), Decimal("0"), Decimal("4408470.00"), Decimal("0")],
        }
    )
    path = tmp_path / "recon.xlsx"
    write(path, {"X": detail_frame()}, aging=aging)
    ws = openpyxl.load_workbook(path)["Summary"]
    header = next(r for r in ws.iter_rows() if r[0].value == "bucket")
    assert [c.value for c in header[:4]] == ["bucket", "hours", "amount EUR", "amount USD"]
    rows = {r[0].value: r for r in ws.iter_rows() if r[0].value in AGING_BUCKETS}
    assert Decimal(str(rows["0-1"][2].value)) == Decimal("13376.25")
    assert Decimal(str(rows["8-30"][3].value)) == Decimal("4408470.00")
    assert rows["8-30"][3].number_format == "#,##0.00"
    with zipfile.ZipFile(path) as zf:
        amounts = zf.read("xl/charts/chart2.xml").decode()
    assert amounts.count("<ser>") == 2  # EUR and USD side by side


def test_aging_rejects_unknown_bucket(tmp_path):
    bad = pd.DataFrame({"bucket": ["0-1", "31-60"], "hours": [1, 2], "amount": [1, 2]})
    with pytest.raises(ValueError, match="31-60"):
        write(tmp_path / "x.xlsx", {"X": detail_frame()}, aging=bad)
    assert not (tmp_path / "x.xlsx").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


# --------------------------------------------------------------------------- detail sheets


def test_detail_sheet_layout_and_number_formats(tmp_path, row_path):
    path = tmp_path / "recon.xlsx"
    write(path, {"Missing in ERP": detail_frame()})
    ws = openpyxl.load_workbook(path)["Missing in ERP"]
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:F4"
    header = next(ws.iter_rows(max_row=1))
    assert [c.value for c in header] == list(detail_frame().columns)
    assert all(c.font.b and c.fill.fill_type == "solid" for c in header)
    assert ws.column_dimensions["A"].width >= len("entry_id")
    assert ws.column_dimensions["F"].width >= len("yyyy-mm-dd hh:mm")

    row2 = {c.column_letter: c for c in ws[2]}
    assert (row2["A"].value, row2["A"].number_format) == (101, "0")
    assert (row2["B"].value, row2["B"].data_type) == ("E001", "s")
    assert (row2["C"].value, row2["C"].number_format) == (1234.56, "#,##0.00")
    assert (row2["D"].value, row2["D"].number_format) == (7.5, "0.00")
    assert (row2["E"].value, row2["E"].number_format) == (datetime(2026, 3, 2), "yyyy-mm-dd")
    assert row2["F"].value == datetime(2026, 3, 2, 17, 5)
    assert row2["F"].number_format == "yyyy-mm-dd hh:mm"
    row3 = [c.value for c in ws[3]]
    assert row3 == [102, "E002", -0.01, None, None, datetime(2026, 3, 3, 9, 0)]
    assert [c.value for c in ws[4]] == [103, None, None, 0.25, datetime(2026, 3, 31), None]
    assert ws.max_row == 4


def test_formula_injection_is_written_as_text(tmp_path, row_path):
    path = tmp_path / "recon.xlsx"
    frame = pd.DataFrame(
        {
            "comment": INJECTIONS + ["plain"],
            "delta": [-5, -1, 0, 1, 2, 3, 4, 5],
            "amount": [Decimal("-2.35")] * 8,
        }
    )
    write(path, {"Injected": frame}, notes=["=cmd|' /C calc'!A0"], title="=TITLE()")
    xml = sheet_xml(path, 2)
    assert "<f>" not in xml and "<f " not in xml
    assert "<f>" not in sheet_xml(path, 1) and "<f " not in sheet_xml(path, 1)
    wb = openpyxl.load_workbook(path)
    ws = wb["Injected"]
    for row, text in enumerate(INJECTIONS, start=2):
        cell = ws.cell(row=row, column=1)
        assert cell.value == text  # unchanged: no apostrophe or space added
        assert cell.data_type == "s"
        assert cell.quotePrefix  # Excel keeps it text even when the cell is edited
    assert not ws.cell(row=9, column=1).quotePrefix
    negative = ws.cell(row=2, column=2)
    assert (negative.value, negative.data_type) == (-5, "n")
    assert (ws.cell(row=2, column=3).value, ws.cell(row=2, column=3).data_type) == (-2.35, "n")
    summary = wb["Summary"]
    assert (summary["A1"].value, summary["A1"].data_type) == ("=TITLE()", "s")
    assert rows_below(summary, "Notes")[0][0] == "=cmd|' /C calc'!A0"


def test_injection_in_header_and_arrow_strings(tmp_path, row_path):
    path = tmp_path / "recon.xlsx"
    table = pa.table({"=SUM(1)": pa.array(["=1+1", None, "@cmd"], pa.string())})
    write(path, {"A": table})
    assert "<f>" not in sheet_xml(path, 2)
    ws = openpyxl.load_workbook(path)["A"]
    assert [(c.value, c.data_type) for c in ws["A"]] == [
        ("=SUM(1)", "s"),
        ("=1+1", "s"),
        (None, "n"),
        ("@cmd", "s"),
    ]


def test_large_sheet_is_split_with_a_note(tmp_path, row_path):
    path = tmp_path / "recon.xlsx"
    frame = pd.DataFrame({"entry_id": range(1, 8), "amount": [Decimal("1.01")] * 7})
    info = write(path, {"Changed hours": frame, "Other": frame.iloc[:2]}, max_rows_per_sheet=3)
    parts = ["Changed hours", "Changed hours (2)", "Changed hours (3)"]
    assert info.split_sheets == {"Changed hours": parts}
    assert info.rows == {
        "Changed hours": 3,
        "Changed hours (2)": 3,
        "Changed hours (3)": 1,
        "Other": 2,
    }
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Summary", *parts, "Other"]
    ids = []
    for name in parts:
        ws = wb[name]
        assert [c.value for c in ws[1]] == ["entry_id", "amount"]
        assert ws.freeze_panes == "A2"
        assert ws.auto_filter.ref == f"A1:B{info.rows[name] + 1}"
        ids += [r[0] for r in ws.iter_rows(min_row=2, values_only=True)]
    assert ids == list(range(1, 8))  # nothing lost, nothing repeated, order kept
    notes = [r[0] for r in rows_below(wb["Summary"], "Notes")]
    assert notes == [
        "Sheet 'Changed hours' has 7 rows, more than 3 per sheet: split into 3 parts: "
        "Changed hours, Changed hours (2), Changed hours (3)."
    ]
    listed = [r[:3] for r in rows_below(wb["Summary"], "Sheets")[1:]]
    assert listed == [
        ("Changed hours", "Changed hours", 3),
        ("Changed hours (2)", "Changed hours", 3),
        ("Changed hours (3)", "Changed hours", 1),
        ("Other", "Other", 2),
    ]


def test_exactly_full_sheet_is_not_split(tmp_path, row_path):
    frame = pd.DataFrame({"n": range(4)})
    info = write(tmp_path / "r.xlsx", {"Full": frame}, max_rows_per_sheet=4)
    assert info.split_sheets == {} and info.rows == {"Full": 4}


def test_decimal_money_exact_to_the_cent(tmp_path, row_path):
    amounts = [
        Decimal("0.10"),
        Decimal("0.07"),
        Decimal("-0.01"),
        Decimal("1234567.89"),
        Decimal("99999999999.99"),
        Decimal("-45678.05"),
    ]
    path = tmp_path / "recon.xlsx"
    write(path, {"M": pd.DataFrame({"amount": amounts})})
    xml = sheet_xml(path, 2)
    stored = re.findall(r'<c r="A\d+"[^>]*><v>([^<]*)</v>', xml)
    # The file holds the double nearest each amount (as openpyxl and Excel do), so Excel
    # shows it to the cent: the text parses to that very double.
    assert [float(v) for v in stored] == [float(a) for a in amounts]
    ws = openpyxl.load_workbook(path)["M"]
    assert [as_decimal(r[0]) for r in ws.iter_rows(min_row=2, values_only=True)] == amounts


def test_empty_sheets_are_header_only_and_valid(tmp_path, row_path):
    path = tmp_path / "recon.xlsx"
    empty = detail_frame().iloc[:0]
    info = write(path, {"Nothing": empty, "Nothing arrow": pa.Table.from_pandas(empty)})
    assert info.rows == {"Nothing": 0, "Nothing arrow": 0}
    wb = openpyxl.load_workbook(path)
    for name in ("Nothing", "Nothing arrow"):
        ws = wb[name]
        assert ws.max_row == 1
        assert [c.value for c in ws[1]] == list(empty.columns)
        assert ws.auto_filter.ref == "A1:F1"
        assert ws.freeze_panes == "A2"


def test_arrow_table_matches_pandas_frame(tmp_path, row_path):
    frame = detail_frame()
    table = pa.table(
        {
            "entry_id": pa.array([101, 102, 103], pa.int64()),
            "employee": pa.array(["E001", "E002", None]).dictionary_encode(),
            "amount": pa.array([Decimal("1234.56"), Decimal("-0.01"), None], pa.decimal128(12, 2)),
            "approved_hours": pa.array(
                [Decimal("7.50"), None, Decimal("0.25")], pa.decimal128(6, 2)
            ),
            "work_date": pa.array([date(2026, 3, 2), None, date(2026, 3, 31)], pa.date32()),
            "approved_at": pa.array(
                [datetime(2026, 3, 2, 17, 5), datetime(2026, 3, 3, 9, 0), None], pa.timestamp("us")
            ),
        }
    )
    write(tmp_path / "pd.xlsx", {"S": frame})
    write(tmp_path / "pa.xlsx", {"S": table})
    got = {}
    for name in ("pd", "pa"):
        ws = openpyxl.load_workbook(tmp_path / f"{name}.xlsx")["S"]
        got[name] = [[(c.value, c.number_format) for c in row] for row in ws.iter_rows()]
    assert got["pa"] == got["pd"]


def test_both_row_writers_produce_the_same_sheet_xml(tmp_path, monkeypatch):
    if not workbook._supports_fast_rows():
        pytest.skip("this openpyxl has no WriteOnlyWorksheet._values_to_row (fallback only)")
    frame = detail_frame().assign(comment=["=1+1", "ok", "@x"], flag=[True, False, None])
    for fast in (True, False):
        monkeypatch.setattr(workbook, "FAST_ROWS", fast)
        write(tmp_path / f"{fast}.xlsx", {"S": frame})
    assert sheet_xml(tmp_path / "True.xlsx", 2) == sheet_xml(tmp_path / "False.xlsx", 2)


def test_column_kinds_from_dtypes(tmp_path, row_path):
    frame = pd.DataFrame(
        {
            "ts_utc": pd.to_datetime(["2026-03-02 17:05", None]).tz_localize("Europe/Berlin"),
            "day": pd.to_datetime(["2026-03-02", "2026-03-03"]),  # DuckDB DATE via pandas
            "hours_float": [1.5, float("nan")],
            "big_id": [12345678901234567, 2],  # more digits than a double keeps
            "nullable": pd.array([7, None], dtype="Int64"),
            "old": [date(1900, 1, 1), date(1900, 2, 28)],  # before Excel's phantom 1900-02-29
            "mixed": ["x", 3],
            "spent": pd.to_timedelta(["1h30min", "15min"]),
            "billable": [True, None],
        }
    )
    write(tmp_path / "k.xlsx", {"K": frame})
    ws = openpyxl.load_workbook(tmp_path / "k.xlsx")["K"]
    row2 = {c.column_letter: c for c in ws[2]}
    assert (row2["A"].value, row2["A"].number_format) == (
        datetime(2026, 3, 2, 17, 5),
        "yyyy-mm-dd hh:mm",
    )
    assert (row2["B"].value, row2["B"].number_format) == (datetime(2026, 3, 2), "yyyy-mm-dd")
    assert (row2["C"].value, row2["C"].number_format) == (1.5, "0.00")
    assert (row2["D"].value, row2["D"].data_type) == ("12345678901234567", "s")
    assert (row2["E"].value, row2["E"].number_format) == (7, "0")
    assert row2["F"].value == datetime(1900, 1, 1)
    assert ws["F3"].value == datetime(1900, 2, 28)
    assert (row2["G"].value, ws["G3"].value) == ("x", "3")
    assert (row2["H"].value, ws["H3"].value, row2["H"].number_format) == (1.5, 0.25, "0.00")
    assert (row2["I"].value, row2["I"].data_type, ws["I3"].value) == (True, "b", None)
    assert (ws["C3"].value, ws["E3"].value) == (None, None)  # NaN and NA are empty cells


def test_unstorable_text_is_fixed_and_noted(tmp_path, row_path):
    frame = pd.DataFrame({"text": ["bell\x07here", "x" * 40_000, "fine"]})
    info = write(tmp_path / "t.xlsx", {"T": frame})
    ws = openpyxl.load_workbook(tmp_path / "t.xlsx")["T"]
    assert ws["A2"].value == "bell\ufffdhere"
    assert ws["A3"].value == "x" * 32_767
    assert any("1 values longer than 32,767" in n for n in info.notes)
    assert any("control characters" in n for n in info.notes)


def test_sheet_names_are_sanitised_and_unique(tmp_path, row_path):
    frame = pd.DataFrame({"a": [1]})
    sheets = {
        "Missing: [ERP] a/b\\c*?": frame,
        "A very long exception class name that exceeds 31 characters": frame,
        "summary": frame,
        "Dup": frame,
        "dup": frame,
        "'quoted'": frame,
    }
    info = write(tmp_path / "n.xlsx", sheets)
    assert info.sheet_names == [
        "Summary",
        "Missing_ _ERP_ a_b_c__",
        "A very long exception class nam",
        "summary (2)",
        "Dup",
        "dup (2)",
        "quoted",
    ]
    assert openpyxl.load_workbook(tmp_path / "n.xlsx").sheetnames == info.sheet_names


def test_existing_file_is_replaced_and_bad_arguments_rejected(tmp_path):
    path = tmp_path / "recon.xlsx"
    path.write_bytes(b"old")
    write(path, {"X": detail_frame()})
    assert openpyxl.load_workbook(path).sheetnames == ["Summary", "X"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recon.xlsx"]
    with pytest.raises(ValueError, match="max_rows_per_sheet"):
        write(path, {"X": detail_frame()}, max_rows_per_sheet=1_048_576)
    with pytest.raises(TypeError, match="DataFrame or pyarrow Table"):
        write(path, {"X": [1, 2]})
    with pytest.raises(ValueError, match="16,384"):
        write(path, {"X": pd.DataFrame([range(16_385)])})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recon.xlsx"]


def test_frame_without_columns_still_gives_a_valid_sheet(tmp_path, row_path):
    info = write(tmp_path / "e.xlsx", {"Nothing at all": pd.DataFrame()})
    ws = openpyxl.load_workbook(tmp_path / "e.xlsx")["Nothing at all"]
    assert (info.rows, [c.value for c in ws[1]]) == ({"Nothing at all": 0}, ["(no columns)"])


# --------------------------------------------------------------------------- for people


def test_headers_are_display_names_and_formats_follow_the_column(tmp_path, row_path):
    """Headers are the caller's words; the kind of a column still comes from its own name
    (an hours column renamed without "hours" keeps the hours format)."""
    path = tmp_path / "h.xlsx"
    headers = {"approved_hours": "Approved", "amount": "Amount (PSA)", "legal_entity": "Entity"}
    write(path, {"S": detail_frame()}, headers=headers)
    wb = openpyxl.load_workbook(path)
    ws = wb["S"]
    assert [c.value for c in ws[1]] == [
        "entry_id",
        "employee",
        "Amount (PSA)",
        "Approved",
        "work_date",
        "approved_at",
    ]
    assert (ws["D2"].value, ws["D2"].number_format) == (7.5, "0.00")
    assert (ws["C2"].value, ws["C2"].number_format) == (1234.56, "#,##0.00")
    assert ws.column_dimensions["C"].width >= len("Amount (PSA)") + 4
    totals = next(r for r in wb["Summary"].iter_rows() if r[1].value == "currency")
    assert totals[0].value == "Entity"  # summary tables too
    le_us = next(r for r in wb["Summary"].iter_rows() if r[0].value == "LE-US")
    assert le_us[4].font.color.rgb == "FFC00000"  # variance found by its column name still


def test_every_sheet_is_set_up_for_printing(tmp_path, row_path):
    path = tmp_path / "p.xlsx"
    frame = pd.DataFrame({"entry_id": range(5), "amount": [Decimal("1.00")] * 5})
    write(path, {"Long": frame, "Empty": frame.iloc[:0]}, max_rows_per_sheet=3)
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Summary", "Long", "Long (2)", "Empty"]
    for ws in wb.worksheets:
        assert ws.page_setup.orientation == "landscape", ws.title
        assert (ws.page_setup.fitToWidth, ws.page_setup.fitToHeight) == (1, 0), ws.title
        assert ws.sheet_properties.pageSetUpPr.fitToPage, ws.title
    assert [wb[n].print_title_rows for n in wb.sheetnames[1:]] == ["$1:$1"] * 3
    assert wb["Summary"].print_title_rows is None


def test_the_period_is_stated_under_the_title(tmp_path):
    path = tmp_path / "p.xlsx"
    write(path, {"X": detail_frame()}, period="2026-11-01 to 2026-11-30, all legal entities")
    ws = openpyxl.load_workbook(path)["Summary"]
    assert (ws["A2"].value, ws["B2"].value) == (
        "Period",
        "2026-11-01 to 2026-11-30, all legal entities",
    )
    assert ws["A3"].value == "Generated at"


@pytest.mark.parametrize("as_arrow", [False, True])
def test_exchange_rates_are_shown_to_their_last_decimal(tmp_path, as_arrow):
    """An exchange rate (8 decimals) is not money: shown 1.0834 and 0.00012345, not 1.08 and
    0.00; the amounts beside it stay money; a rate's date stays a date."""
    frame = pd.DataFrame(
        {
            "ic_fx_rate": [Decimal("1.08340000"), Decimal("0.00012345")],
            "ic_fx_rate_date": [date(2026, 10, 15), date(2026, 10, 16)],
            "amount": [Decimal("572.04"), Decimal("1.00")],
        }
    )
    sheet = pa.Table.from_pandas(frame, preserve_index=False) if as_arrow else frame
    write(tmp_path / "rates.xlsx", {"Intercompany": sheet})
    ws = openpyxl.load_workbook(tmp_path / "rates.xlsx")["Intercompany"]
    header = [c.value for c in ws[1]]
    rate, day, amount = (header.index(h) for h in ("ic_fx_rate", "ic_fx_rate_date", "amount"))
    cells = list(ws.iter_rows(min_row=2, max_row=3))
    assert [c[rate].value for c in cells] == [1.0834, 0.00012345]
    assert {c[rate].number_format for c in cells} == {"0.00######"}
    assert {c[day].number_format for c in cells} == {"yyyy-mm-dd"}
    assert {c[amount].number_format for c in cells} == {"#,##0.00"}
