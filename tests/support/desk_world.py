"""A staging database for the desk's tests: quarantined rows of several rules and datasets (a
keyless row delivered twice among them), a real posting window with its preview workbook, a
reconciliation workbook in the reports folder, and users of each role."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
import pytest

from desk.users import add_user
from posting.window import RetryPolicy, WindowConfig, run_window
from staging_models.db import StagingDB
from tests.support.posting_helpers import duck_erp, with_master_data
from tests.support.staging_helpers import World, entry

PASSWORD = "correct horse battery"
USERS = {"carla": "controller", "otto": "operations", "ada": "admin"}
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@dataclass
class DeskWorld:
    db: StagingDB
    folder: Path
    window_id: str
    preview: Path
    workbook: Path


def build(db: StagingDB, folder: Path, monkeypatch: pytest.MonkeyPatch) -> DeskWorld:
    """Land, validate, post one window; the settings point the desk at `folder`."""
    monkeypatch.setenv("STAGEPOST_DATA_DIR", str(folder))
    monkeypatch.setenv("STAGEPOST_REPORTS_DIR", str(folder / "reports"))
    monkeypatch.setenv("STAGEPOST_PREVIEW_DIR", str(folder / "previews"))
    monkeypatch.setenv(
        "STAGEPOST_DESK_ROUTING",
        '{"rules": {"TE_UNKNOWN_EMPLOYEE": "hr-data"}, "datasets": {"invoices": "billing"},'
        ' "default": "finance-ops"}',
    )
    w = World(db, folder / "files").master()
    ok = "2026-11-12T09:00:00+01:00"  # approved after every work date below
    keyless = entry(
        entry_id="", approved_at=ok, hours="3.00", work_date="2026-11-10", description="no id"
    )
    w.land(
        "time_entries",
        [
            entry(entry_id="TE1", approved_at=ok),
            entry(  # another legal entity and currency
                entry_id="TE7",
                approved_at=ok,
                employee_id="E2",
                employee_name="Jörg Müller",
                project_code="P5",
                currency="EUR",
                bill_rate="100.00",
                hours="2.25",
            ),
            entry(
                entry_id="TE2", approved_at=ok, project_code="P2", work_date="2026-11-04"
            ),  # TE_PROJECT_CLOSED
            entry(
                entry_id="TE3", approved_at=ok, employee_id="E9", work_date="2026-11-05"
            ),  # TE_UNKNOWN_EMPLOYEE
            entry(
                entry_id="TE4", approved_at=ok, hours="30.00", work_date="2026-11-06"
            ),  # TE_HOURS_OVER_24
            entry(
                entry_id="TE6", approved_at=ok, project_code="P4", work_date="2026-11-09"
            ),  # TE_PROJECT_ON_HOLD
            keyless,
        ],
    )
    w.validate(NOW)
    # The next day's export: the keyless row again (one line, twice), a new good entry.
    w.land("time_entries", [keyless, entry(entry_id="TE5", work_date="2026-11-03", approved_at=ok)])
    w.validate(NOW)
    erp = duck_erp(folder / "erp.duckdb")
    with_master_data(erp)
    result = run_window(
        db,
        erp,
        WindowConfig(
            dry_run=False,
            note="November hours",
            launched_by="otto",
            preview_dir=folder / "previews",
            retry=RetryPolicy(attempts=1, base_delay=0),
        ),
        sleep=lambda s: None,
    )
    erp.close()
    reports = folder / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    workbook = reports / "reconciliation_2026-11.xlsx"
    book = openpyxl.Workbook()
    book.active.append(["period", "2026-11"])
    book.save(workbook)
    for name, role in USERS.items():
        add_user(db, name, role, password=PASSWORD, created_by="test")
    assert result.preview_path is not None
    return DeskWorld(db, folder, result.window_id, Path(result.preview_path), workbook)
