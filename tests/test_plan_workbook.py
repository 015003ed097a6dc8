"""Plan vs actual through Dagster: the asset's key figures (exact text, never floats) and the
controllers' workbook, read back with openpyxl and checked cell by cell, chart included.

The world is tests/support/plan_world.py plus a third employee whose id looks like a formula
(`=SUM(1,2)`, US01, the default 40 h), planned 8 h on P1 in the week of 2 Nov and booking
nothing: it must reach the sheets as text, never as a formula.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
from dagster import DagsterInstance, FloatMetadataValue, RunConfig, materialize

from assets.reconciliation import ReconciliationConfig, WorkbookConfig, reconciliation_assets
from assets.resource_plans import PlanVsActualConfig, plan_vs_actual
from io_managers.staging_table import StagingTableIOManager
from reconciliation.plan_report import (
    DETAIL_SHEET,
    HEADERS,
    PEOPLE_SHEET,
    PROJECT_SHEET,
    WEEK_SHEET,
)
from resources.feedback import OutboundDelivery
from resources.psa_source import PsaSource
from resources.reports import ReportUpload
from resources.staging import StagingDatabase
from staging_models.db import dispose_all, staging_db
from tests.support.plan_world import assignment, build
from tests.support.recon_helpers import make_erp
from tests.support.staging_helpers import EMPLOYEES

RISKY = "=SUM(1,2)"


class FixedErp:
    def __init__(self, target) -> None:
        self.target = target

    def get_target(self):
        return self.target


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("plans")
    mp = pytest.MonkeyPatch()
    mp.setenv("STAGEPOST_DATA_DIR", str(folder))
    mp.setenv("STAGEPOST_REPORTS_DIR", str(folder / "reports"))
    mp.setenv("STAGEPOST_WEEKLY_CAPACITY_HOURS", "40")
    url = f"duckdb:///{folder / 'staging.duckdb'}"
    db = staging_db(url)
    world = build(db, folder / "files")
    world.land("employees", [{**EMPLOYEES[0], "employee_id": RISKY, "employee_name": "Risky"}])
    world.land(
        "assignments",
        [assignment(assignment_id="A9", employee_id=RISKY, task_code="", planned_hours="8")],
    )
    world.validate()
    erp = make_erp(folder)
    staging = StagingDatabase(url=url)
    result = materialize(
        [*reconciliation_assets, plan_vs_actual],
        resources={
            "staging": staging,
            "psa_source": PsaSource(inbox=str(folder / "inbox")),
            "erp": FixedErp(erp),
            "staging_table_io_manager": StagingTableIOManager(staging=staging),
            "report_upload": ReportUpload(),
            "outbound": OutboundDelivery(folder=str(folder / "feedback")),
        },
        instance=DagsterInstance.ephemeral(),
        run_config=RunConfig(
            ops={
                "plan_vs_actual": PlanVsActualConfig(date_from="2026-11-02", date_to="2026-11-20"),
                "reconciliation": ReconciliationConfig(
                    date_from="2026-11-01", date_to="2026-11-30", check_psa_inbox=False
                ),
                "reconciliation_workbook": WorkbookConfig(per_legal_entity=True),
            }
        ),
    )
    assert result.success
    yield {"result": result, "db": db, "folder": folder}
    erp.close()
    dispose_all()
    mp.undo()


def _metadata(result, key: str) -> dict:
    (mat,) = [
        e.event_specific_data.materialization
        for e in result.get_asset_materialization_events()
        if e.event_specific_data.materialization.asset_key.to_user_string() == key
    ]
    return mat.metadata


def test_key_figures_are_run_metadata(run) -> None:
    md = _metadata(run["result"], "plan_vs_actual")
    assert md["weeks"].value == "weeks of 2026-11-02 to 2026-11-16 (3)"
    assert md["plan_actual_rows"].value == 8
    assert md["planned_hours"].value == "73.0000"  # 65 + 8 for the third employee
    assert md["actual_hours"].value == "58.5000"
    assert md["billable_hours"].value == "52.5000"
    assert md["capacity_hours"].value == "336.0000"  # (40 + 32 + 40) x 3 weeks
    assert md["utilization"].value == "15.63%"  # 52.5 / 336 = 15.625%, half up
    assert md["plan_burn"].value == "77.40%"  # 56.5 / 73
    assert md["projects_over_plan"].value == 1
    assert md["projects_without_plan"].value == 1
    assert md["people_over_plan"].value == 1
    assert md["people_under_plan"].value == 2
    assert md["projects_over_plan_hours"].value == {"P5": "28.5000 h of 25.0000 h planned"}
    assert md["people_under_plan_hours"].value == {
        "=SUM(1,2)": "0.0000 h of 8.0000 h planned",
        "E1": "30.0000 h of 40.0000 h planned",
    }
    assert re.search(r"\| 2026-11-02 +\| 35\.5000 +\| 30\.0000 +\|", md["by_week"].value)
    assert not [k for k, v in md.items() if isinstance(v, FloatMetadataValue)]


def _workbook(run, scope: str = "all") -> openpyxl.Workbook:
    (path,) = (run["folder"] / "reports").glob(f"reconciliation_{scope}_*.xlsx")
    return openpyxl.load_workbook(path)


def _rows(ws) -> list[tuple]:
    return [r for r in ws.iter_rows(values_only=True)]


WEEK_HEADER = (
    "Week (Monday)",
    "Planned hours",
    "Actual hours",
    "Hours: actual - planned",
    "Billable hours",
    "Capacity hours",
    "Utilization (billable / capacity)",
)


def _cells(row: tuple) -> tuple:
    """Dates as dates, numbers as they are (Excel stores doubles), text as text."""
    return tuple(v.date() if hasattr(v, "date") else v for v in row)


def test_week_sheet_cell_by_cell_with_its_chart(run) -> None:
    from datetime import date

    wb = _workbook(run)
    ws = wb[WEEK_SHEET]
    rows = _rows(ws)
    assert rows[0] == WEEK_HEADER
    assert [_cells(r) for r in rows[1:]] == [
        (date(2026, 11, 2), 35.5, 30, -5.5, 30, 112, "26.79%"),
        (date(2026, 11, 9), 29.1667, 16.5, -12.6667, 12.5, 112, "11.16%"),
        (date(2026, 11, 16), 8.3333, 12, 3.6667, 10, 112, "8.93%"),
    ]
    assert ws["B2"].number_format == "0.00" and ws["A2"].number_format == "yyyy-mm-dd"
    assert len(ws._charts) == 1
    with zipfile.ZipFile(next((run["folder"] / "reports").glob("reconciliation_all_*.xlsx"))) as z:
        charts = [z.read(n).decode() for n in z.namelist() if n.startswith("xl/charts/chart")]
    week_chart = [c for c in charts if "Plan vs actual" in c]
    assert len(week_chart) == 1
    xml = week_chart[0]
    assert "barChart" in xml and '<grouping val="clustered"' in xml
    for col in "BCEF":  # planned, actual, billable, capacity: one series each
        assert f"$${col}$2:$${col}$4".replace("$$", "$") in xml
    assert "$A$2:$A$4" in xml  # the weeks


def test_project_people_and_detail_sheets(run) -> None:
    wb = _workbook(run)
    projects = _rows(wb[PROJECT_SHEET])
    assert projects[0] == (
        "Project",
        "Legal entity",
        "Planned hours",
        "Actual hours",
        "Hours: actual - planned",
        "Billable hours",
        "Burn (actual / planned)",
        "Against plan",
    )
    assert projects[1:] == [
        ("P1", "US01", 48, 28, -20, 24, "58.33%", "Under plan"),
        ("P3", "US01", 0, 2, 2, 0, None, "No plan"),
        ("P5", "DE01", 25, 28.5, 3.5, 28.5, "114.00%", "Over plan"),
    ]
    people = _rows(wb[PEOPLE_SHEET])
    assert people[0][0] == "Employee" and people[0][-2:] == (
        HEADERS["utilization"],
        HEADERS["plan_status"],
    )
    assert people[1:] == [
        (RISKY, "US01", 120, 8, 0, -8, 0, "0.00%", "Under plan"),
        ("E1", "US01", 120, 40, 30, -10, 24, "20.00%", "Under plan"),
        ("E2", "DE01", 96, 25, 28.5, 3.5, 28.5, "29.69%", "Over plan"),
    ]
    # The formula-looking id is text, never a formula.
    cell = wb[PEOPLE_SHEET]["A2"]
    assert cell.data_type == "s" and cell.value == RISKY
    detail = _rows(wb[DETAIL_SHEET])
    assert len(detail) == 1 + 8
    first = _cells(detail[1])
    assert first[:3] == (RISKY, "P1", __import__("datetime").date(2026, 11, 2))
    assert first[5:] == (8, 0, -8, 0, 1600, 0)  # 8 h planned at 200.00
    e2 = [_cells(r) for r in detail[1:] if r[0] == "E2"]
    assert [r[5:] for r in e2] == [
        (7.5, 6, -1.5, 6, 750, 600),
        (12.5, 12.5, 0, 12.5, 1250, 1250),
        (5, 10, 5, 10, 500, 1000),
    ]
    assert wb[DETAIL_SHEET]["J2"].number_format == "#,##0.00"


def test_summary_key_figures(run) -> None:
    rows = _rows(_workbook(run)["Summary"])
    expected = {
        "Plan vs actual: planned hours": 73,
        "Plan vs actual: actual hours": 58.5,
        "Plan vs actual: billable hours": 52.5,
        "Plan vs actual: capacity hours": 336,
        "Utilization (billable / capacity)": "15.63%",
        "Plan burn (actual / planned, planned projects)": "77.40%",
        "Projects over plan": 1,
        "Projects booked without a plan": 1,
        "People over plan": 1,
        "People under plan": 2,
    }
    start = rows.index(("Key figures",) + (None,) * (len(rows[0]) - 1)) + 2
    labels = [r[0] for r in rows[start:]]
    end = labels.index(None)
    figures = {r[0]: r[1] for r in rows[start : start + end]}
    assert {k: figures[k] for k in expected} == expected
    # After the reconciliation's own figures, in this order.
    assert labels[end - len(expected) : end] == list(expected)
    sheets = [r[0] for r in rows[[r[0] for r in rows].index("Sheets") + 2 :]]
    assert {WEEK_SHEET, PROJECT_SHEET, PEOPLE_SHEET, DETAIL_SHEET} <= set(sheets)


def test_a_legal_entity_workbook_holds_its_own(run) -> None:
    """DE01's workbook: its projects' hours and its people's capacity only."""
    wb = _workbook(run, "DE01")
    rows = _rows(wb[WEEK_SHEET])
    assert [r[1:] for r in rows[1:]] == [
        (7.5, 6, -1.5, 6, 32, "18.75%"),
        (12.5, 12.5, 0, 12.5, 32, "39.06%"),
        (5, 10, 5, 10, 32, "31.25%"),
    ]
    assert [r[0] for r in _rows(wb[PEOPLE_SHEET])[1:]] == ["E2"]
    assert [r[0] for r in _rows(wb[PROJECT_SHEET])[1:]] == ["P5"]


def test_no_plans_no_sheets(tmp_path: Path) -> None:
    """Without any valid assignment the workbook is as before: no plan sheets."""
    from reconciliation.plan_report import has_plans

    db = staging_db(f"duckdb:///{tmp_path / 's.duckdb'}")
    try:
        assert has_plans(db) is False
    finally:
        dispose_all()


def test_a_detail_chart_is_drawn_only_on_a_sheet_that_is_not_split(tmp_path: Path) -> None:
    """`write_workbook(charts=...)`: a clustered column chart over the sheet's own rows, one
    series per value column; a sheet split into parts gets none (its rows are in pieces)."""
    import pandas as pd

    from reconciliation.workbook import SheetChart, write_workbook

    frame = pd.DataFrame(
        {"week": ["W1", "W2", "W3"], "planned_hours": [1, 2, 3], "actual_hours": [2, 2, 2]}
    )
    chart = SheetChart("Weeks", "week", ("planned_hours", "actual_hours"))
    aging = pd.DataFrame({"bucket": ["0-1"], "hours": [0]})
    for rows, charts in ((10, 1), (2, 0)):
        path = tmp_path / f"w{rows}.xlsx"
        info = write_workbook(
            path,
            title="t",
            kpis=[],
            totals=pd.DataFrame({"x": [1]}),
            aging=aging,
            sheets={"Weeks": frame},
            charts={"Weeks": chart},
            max_rows_per_sheet=rows,
        )
        wb = openpyxl.load_workbook(path)
        assert sum(len(wb[name]._charts) for name in info.sheet_names[1:]) == charts
    wb = openpyxl.load_workbook(tmp_path / "w10.xlsx")
    (drawn,) = wb["Weeks"]._charts
    assert drawn.grouping == "clustered" and len(drawn.series) == 2
