"""A Harvest "Detailed time report" export, built from the column list Harvest documents."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path

from openpyxl import Workbook

from connectors.sources.mapping import normalise_header

#: Reports > Detailed time > Export, in Harvest's order (help centre, "Detailed time and
#: detailed expense reports"; the same header appears in third-party importers' fixtures).
HARVEST_COLUMNS = (
    "Date",
    "Client",
    "Project",
    "Project Code",
    "Task",
    "Notes",
    "Hours",
    "Hours Rounded",
    "Billable?",
    "Invoiced?",
    "Approved?",
    "First Name",
    "Last Name",
    "Roles",
    "Employee?",
    "Billable Rate",
    "Billable Amount",
    "Cost Rate",
    "Cost Amount",
    "Currency",
    "External Reference URL",
)

_BASE = {
    "Date": "11/02/2026",
    "Client": "Garage Leroy",
    "Project": "Brochure",
    "Project Code": "GL-01",
    "Task": "Design",
    "Notes": "Cover and inside pages",
    "Hours": "2:30",
    "Hours Rounded": "2.50",
    "Billable?": "Yes",
    "Invoiced?": "No",
    "Approved?": "Yes",
    "First Name": "Hélène",
    "Last Name": "Bernard",
    "Roles": "Designer",
    "Employee?": "Yes",
    "Billable Rate": "95.00",
    "Billable Amount": "237.50",
    "Cost Rate": "45.00",
    "Cost Amount": "112.50",
    "Currency": "Euro - EUR",
    "External Reference URL": "",
}


_BY_NORM = {normalise_header(c): c for c in HARVEST_COLUMNS}


def harvest_row(**values: str) -> dict[str, str]:
    """A row of the export; keywords name columns loosely (`Project_Code=`, `Billable=`)."""
    return {**_BASE, **{_BY_NORM[normalise_header(k)]: v for k, v in values.items()}}


HARVEST_ROWS = [
    harvest_row(),
    # Decimal hours, not approved, no project code, notes with a comma and a line break.
    harvest_row(
        Date="11/03/2026",
        Project="Internal",
        Project_Code="",
        Task="Meetings",
        Notes="Kick-off, then\nplanning",
        Hours="1.25",
        Billable="No",
        Approved="No",
        First_Name="Julien",
        Last_Name="Roux",
    ),
    # Two identical entries on the same day: two rows, two IDs.
    harvest_row(Date="11/04/2026", Hours="0:20", Notes="Proofs"),
    harvest_row(Date="11/04/2026", Hours="0:20", Notes="Proofs"),
    harvest_row(Date="11/05/2026", Hours="0:01", Notes="Call", Currency="US Dollar - USD"),
]
# The same rows to the last digit after mapping, in canonical terms (for assertions).
HARVEST_HOURS = ["2.50", "1.25", "0.3333", "0.3333", "0.0167"]


def write_harvest_csv(
    path: Path,
    rows: Iterable[Mapping[str, str]],
    columns: Iterable[str] = HARVEST_COLUMNS,
    encoding: str = "utf-8",
) -> Path:
    cols = list(columns)
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([r.get(c, "") for c in cols])
    return path


def write_harvest_xlsx(path: Path, rows: Iterable[Mapping[str, str]]) -> Path:
    """The same export saved from Excel: dates as serial numbers, numbers as numbers."""
    wb = Workbook()
    ws = wb.active
    ws.title = "Detailed Time"
    ws.append(list(HARVEST_COLUMNS))
    for r in rows:
        out: list[object] = []
        for c in HARVEST_COLUMNS:
            v = r.get(c, "")
            if c == "Date":
                m, d, y = (int(x) for x in v.split("/"))
                out.append((date(y, m, d) - date(1899, 12, 30)).days)  # an Excel serial
            elif c in ("Hours Rounded", "Billable Rate", "Cost Rate") and v:
                out.append(float(v))
            else:
                out.append(v or None)
        ws.append(out)
    wb.save(path)
    return path
