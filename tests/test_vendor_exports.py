"""The five shipped vendor mappings, each landing its test export as the vendor names it.

Each file under tests/data/vendors/<vendor>/ is built from the vendor's published column
layout (docs/sources.md cites it) with edge rows: durations in several spellings, a German
`;` file with decimal commas, a fixed price, a non-billable row, two currencies, an entry
across midnight and a UTC instant on the next local day, a running entry. The file lands from
an inbox under its own name (nothing renamed), with its master data derived from it alone,
and validates into exactly the counts and Decimal amounts below, on DuckDB and PostgreSQL.
"""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from resources.psa_source import PsaSource
from staging_models.db import StagingDB
from staging_models.landing import ingest_dataset
from staging_models.validation import conservation, validate_all

DATA = Path(__file__).resolve().parent / "data" / "vendors"

#: vendor -> (file, settings, rows, valid, not_postable, quarantined {entry: rule}, amount)
CASES = {
    "harvest": (
        "harvest_time_report_from2026-11-01to2026-11-30.csv",
        {},
        5,
        4,
        1,  # Approved? = No: draft
        {},
        Decimal("1695.75"),
    ),
    "toggl": (
        "TogglTrack_Report_Detailed_2026-11-01_2026-11-30.csv",
        {},
        5,
        5,
        0,
        {},
        Decimal("812.38"),
    ),
    "clockify": (
        "Clockify_Time_Report_Detailed_01_11_2026-30_11_2026.csv",
        {},
        5,
        5,
        0,
        {},
        Decimal("3665.65"),
    ),
    "kimai": ("20261130-acme-website.csv", {}, 5, 5, 0, {}, Decimal("1276.08")),
    "solidtime": (
        "time_entries.csv",
        {"default_currency": "EUR"},
        4,
        3,
        0,
        {"9b1c7a52-0001-4a8e-9f00-000000000004": "TE_HOURS_MISSING"},  # still running
        Decimal("268.64"),
    ),
}


def _ingest(db: StagingDB, tmp_path: Path, vendor: str, files: list[Path], **settings: str):
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    for f in files:
        shutil.copy(f, inbox / f.name)
    psa = PsaSource(
        inbox=str(inbox),
        mapping_file=vendor,
        stable_seconds=0,
        default_legal_entity="DE01",
        **settings,
    )
    with psa.open() as source:
        report = ingest_dataset(
            db, source, "time_entries", fmt=psa.file_format(), workdir=tmp_path / "work"
        )
    return report


@pytest.mark.parametrize("vendor", list(CASES))
def test_vendor_export_lands_valid_with_derived_master_data(
    any_db: StagingDB, tmp_path: Path, vendor: str
) -> None:
    name, settings, rows, valid, not_postable, quarantined, amount = CASES[vendor]
    report = _ingest(any_db, tmp_path, vendor, [DATA / vendor / name], **settings)
    assert not report.refused and not report.failures, report.refused or report.failures
    assert [(r.file_name, r.rows_read) for r in report.results] == [(name, rows)]
    derived = report.results[0].extra["derived"]
    assert {"employees", "projects", "project_tasks"} <= set(derived)
    validate_all(any_db, actor="test")
    states = dict(
        any_db.query_df(
            "SELECT state, COUNT(*) AS n FROM stg_time_entries WHERE is_current GROUP BY state"
        ).values
    )
    assert states.get("valid", 0) == valid, states
    assert states.get("not_postable", 0) == not_postable, states
    q = any_db.query_df(
        "SELECT row_key, rule_codes FROM quarantine WHERE dataset = 'time_entries' "
        "AND status = 'open' ORDER BY row_key"
    )
    assert dict(q.values) == quarantined
    master = any_db.query_df(
        "SELECT 'employees' AS d, state FROM stg_employees WHERE is_current UNION ALL "
        "SELECT 'projects', state FROM stg_projects WHERE is_current UNION ALL "
        "SELECT 'project_tasks', state FROM stg_project_tasks WHERE is_current"
    )
    assert (master["state"] == "valid").all(), master.to_dict("records")
    total = any_db.scalar("SELECT SUM(amount) FROM validated_time_entries")
    assert Decimal(total) == amount
    assert conservation(any_db)["ok"].all()
