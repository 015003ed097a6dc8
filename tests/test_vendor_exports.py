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
        {"default_currency": "EUR", "source_timezone": "Europe/Berlin"},
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
        shutil.copy2(f, inbox / f.name)  # keeps the export time (mtime)
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
        "SELECT 'project_tasks', state FROM stg_project_tasks WHERE is_current UNION ALL "
        "SELECT 'rate_cards', state FROM stg_rate_cards WHERE is_current"
    )
    assert (master["state"] == "valid").all(), master.to_dict("records")
    total = any_db.scalar("SELECT SUM(amount) FROM validated_time_entries")
    assert Decimal(total) == amount
    assert conservation(any_db)["ok"].all()


def _states(db: StagingDB) -> dict[str, int]:
    return dict(
        db.query_df(
            "SELECT state, COUNT(*) AS n FROM stg_time_entries WHERE is_current GROUP BY state"
        ).values
    )


def _codes(db: StagingDB, dataset: str = "time_entries") -> set[str]:
    rows = db.query_df(
        "SELECT rule_codes FROM quarantine WHERE dataset = :d AND status = 'open'", {"d": dataset}
    )
    return {c for text in rows["rule_codes"] for c in text.split(",")}


TOGGL = DATA / "toggl" / CASES["toggl"][0]


def test_toggl_entry_deleted_and_re_exported_keeps_every_other_key(
    duck_db: StagingDB, tmp_path: Path
) -> None:
    """The issue's Toggl case: two entries share person, day, project and description; the
    first is deleted in Toggl and the report exported again. Keyed by person + start time,
    the other entry keeps its ID: nothing lands as new, and the day holds its real hours
    (with an identity numbered by file position it took the deleted entry's ID, and the
    day showed 11.0 h for 5.5 h)."""
    _ingest(duck_db, tmp_path, "toggl", [TOGGL])
    lines = TOGGL.read_text(encoding="utf-8-sig").splitlines()
    again = tmp_path / "TogglTrack_Report_Detailed_2026-11-01_2026-11-30 (1).csv"
    again.write_text("\n".join([lines[0], *lines[2:]]) + "\n", encoding="utf-8-sig")
    report = _ingest(duck_db, tmp_path, "toggl", [again])
    (second,) = report.results
    assert (second.rows_read, second.rows_new_version, second.rows_unchanged) == (4, 0, 4)
    day = duck_db.scalar(
        "SELECT SUM(hours) FROM stg_time_entries WHERE is_current "
        "AND employee_id = 'anna@example.com' AND work_date = DATE '2026-11-02'"
    )
    assert Decimal(day) == Decimal("5.4983")  # 2:14:54 + 3:15:00, each once
    assert duck_db.scalar("SELECT COUNT(*) FROM stg_time_entries") == 5


def test_currency_no_one_gives_is_quarantined_never_assumed(
    any_db: StagingDB, tmp_path: Path
) -> None:
    """Toggl's 2017 header `Amount ()` names no currency: without a default the entries and
    the derived projects are quarantined as missing a currency (not booked as USD)."""
    text = TOGGL.read_text(encoding="utf-8-sig").replace("Amount (EUR)", "Amount ()")
    f = tmp_path / "src" / "TogglTrack_Report_Detailed_2017-11-01_2017-11-30.csv"
    f.parent.mkdir()
    f.write_text(text, encoding="utf-8-sig")
    _ingest(any_db, tmp_path, "toggl", [f])
    validate_all(any_db, actor="test")
    assert _states(any_db) == {"quarantined": 5}
    assert {"TE_CURRENCY_MISSING", "TE_PROJECT_NOT_VALID"} <= _codes(any_db)
    assert "PRJ_CURRENCY_MISSING" in _codes(any_db, "projects")


def test_currency_in_the_header_wins_over_the_default(any_db: StagingDB, tmp_path: Path) -> None:
    """A shared mapping booked a EUR file as USD: the header's EUR is kept whatever the
    default says; the default only fills what no one gives."""
    _ingest(any_db, tmp_path, "toggl", [TOGGL], default_currency="USD")
    currencies = any_db.query_df(
        "SELECT DISTINCT currency FROM stg_time_entries UNION SELECT DISTINCT currency "
        "FROM stg_projects"
    )["currency"].tolist()
    assert currencies == ["EUR"]


def test_clockify_amount_a_cent_off_is_flagged(duck_db: StagingDB, tmp_path: Path) -> None:
    """Amounts are computed from the exact duration (7:47:37 x 75 = 584.52); an export whose
    own amount differs (584.51) is quarantined naming both amounts, not silently repriced."""
    src = DATA / "clockify" / CASES["clockify"][0]
    f = tmp_path / "src" / src.name
    f.parent.mkdir()
    f.write_text(src.read_text().replace('"584.52"', '"584.51"'))
    _ingest(duck_db, tmp_path, "clockify", [f])
    validate_all(duck_db, actor="test")
    q = duck_db.query_df(
        "SELECT rule_codes, messages FROM quarantine WHERE dataset = 'time_entries'"
    )
    assert q["rule_codes"].tolist() == ["TE_AMOUNT_MISMATCH"]
    assert "584.51" in q["messages"][0] and "584.52" in q["messages"][0]
    assert _states(duck_db) == {"valid": 4, "quarantined": 1}


def test_master_data_file_wins_over_derived(any_db: StagingDB, tmp_path: Path) -> None:
    """A projects file says P-100 belongs to AT01; the Kimai export derives it as DE01 (the
    default): the file's version stays. A later file replaces a derived project."""
    from tests.support.csvtools import write_csv

    project = {
        "project_code": "P-100",
        "project_name": "Website relaunch",
        "customer_id": "ACME",
        "customer_name": "Acme GmbH",
        "legal_entity": "AT01",
        "currency": "EUR",
        "billing_method": "time_and_materials",
        "status": "open",
    }
    files = tmp_path / "src"
    write_csv(files / "projects.csv", "projects", [project])
    _ingest(any_db, tmp_path, "kimai", [])  # nothing yet: the inbox exists
    from staging_models.landing import land_file

    land_file(any_db, files / "projects.csv", "projects")
    _ingest(any_db, tmp_path, "kimai", [DATA / "kimai" / CASES["kimai"][0]])
    rows = any_db.query_df(
        "SELECT legal_entity, customer_id, version FROM stg_projects WHERE is_current"
    )
    assert rows.values.tolist() == [["AT01", "ACME", 1]]
    employees = any_db.query_df("SELECT legal_entity FROM stg_employees WHERE is_current")
    assert set(employees["legal_entity"]) == {"DE01"}  # derived: no file said otherwise
    write_csv(
        files / "employees_1.csv",
        "employees",
        [{"employee_id": "anna", "employee_name": "Anna Schmidt", "legal_entity": "AT01"}],
    )
    land_file(any_db, files / "employees_1.csv", "employees")
    anna = any_db.query_df(
        "SELECT legal_entity, version FROM stg_employees WHERE is_current AND row_key = 'anna'"
    )
    assert anna.values.tolist() == [["AT01", 2]]


def test_two_vendors_and_master_data_share_one_inbox(duck_db: StagingDB, tmp_path: Path) -> None:
    """Harvest's comma file, Kimai's `;` file with decimal commas and a canonical
    employees file in one inbox, nothing renamed: each mapping reads its own files with its
    own format, the master data is read as canonical."""
    from tests.support.csvtools import write_csv

    inbox = tmp_path / "inbox"
    emp = write_csv(
        inbox / "employees.csv",
        "employees",
        [{"employee_id": "jonas", "employee_name": "Jonas W.", "legal_entity": "DE01"}],
    )
    assert emp.exists()
    files = [DATA / "harvest" / CASES["harvest"][0], DATA / "kimai" / CASES["kimai"][0]]
    psa = PsaSource(
        inbox=str(inbox),
        mapping_file="harvest, kimai",
        stable_seconds=0,
        default_legal_entity="DE01",
    )
    for f in files:
        shutil.copy2(f, inbox / f.name)  # keeps the export time (mtime)
    fmt = psa.file_format()
    with psa.open() as source:
        assert {f.name: source.dataset_of(f.name) for f in source.list_complete()} == {
            "employees.csv": "employees",
            files[0].name: "time_entries",
            files[1].name: "time_entries",
        }
        ingest_dataset(duck_db, source, "employees", fmt=fmt, workdir=tmp_path / "work")
        report = ingest_dataset(duck_db, source, "time_entries", fmt=fmt, workdir=tmp_path / "w")
    assert sorted((r.file_name, r.rows_read) for r in report.results) == [
        (files[1].name, 5),
        (files[0].name, 5),
    ]
    validate_all(duck_db, actor="test")
    assert _states(duck_db) == {"valid": 9, "not_postable": 1}
    jonas = duck_db.query_df(
        "SELECT employee_name, version FROM stg_employees WHERE is_current AND row_key = 'jonas'"
    )
    assert jonas.values.tolist() == [["Jonas W.", 1]]  # the file's, not the derived name


def test_harvest_approval_time_is_the_export_time_and_stays(
    any_db: StagingDB, tmp_path: Path
) -> None:
    """Harvest has no approval time: approved rows get the file's modification time,
    recorded as approved_at_source = export_time. Exported again a day later with nothing
    changed, no entry gets a new version and the first approval time stays."""
    import os
    from datetime import UTC, datetime

    src = DATA / "harvest" / CASES["harvest"][0]
    first = tmp_path / "a" / src.name
    first.parent.mkdir()
    shutil.copy(src, first)
    os.utime(first, (1_796_000_000, 1_796_000_000))  # 2026-11-30T...Z
    _ingest(any_db, tmp_path, "harvest", [first])
    rows = any_db.query_df(
        "SELECT approval_status, approved_at, approved_at_source FROM stg_time_entries "
        "ORDER BY row_no"
    )
    when = datetime.fromtimestamp(1_796_000_000, UTC)
    approved = rows[rows["approval_status"] == "approved"]
    assert len(approved) == 4
    assert set(approved["approved_at_source"]) == {"export_time"}
    assert {t.astimezone(UTC) for t in approved["approved_at"]} == {when}
    draft = rows[rows["approval_status"] == "draft"]
    assert draft["approved_at"].isna().all() and draft["approved_at_source"].isna().all()

    later = tmp_path / "b" / "harvest_time_report_from2026-11-01to2026-12-01.csv"
    later.parent.mkdir()
    new_row = (
        "2026-11-30,Garage Leroy,Brochure,GL-01,Design,Proofs,1.0,Yes,No,Yes,Hélène,Bernard,,"
        "Designer,Yes,95.0,95.0,45.0,45.0,Euro - EUR,\n"
    )
    later.write_text(src.read_text(encoding="utf-8") + new_row, encoding="utf-8")
    os.utime(later, (1_796_086_400, 1_796_086_400))
    (second,) = _ingest(any_db, tmp_path, "harvest", [later]).results
    assert (second.rows_new_version, second.rows_unchanged) == (1, 5)
    kept = any_db.query_df(
        "SELECT approved_at FROM stg_time_entries WHERE is_current AND approved_at IS NOT NULL "
        "AND work_date < DATE '2026-11-30'"
    )
    assert {t.astimezone(UTC) for t in kept["approved_at"]} == {when}
    new = any_db.scalar(
        "SELECT approved_at FROM stg_time_entries WHERE work_date = DATE '2026-11-30'"
    )
    assert new.astimezone(UTC) == datetime.fromtimestamp(1_796_086_400, UTC)


def test_solidtime_work_date_is_the_local_date_of_a_utc_start(
    any_db: StagingDB, tmp_path: Path
) -> None:
    """23:30 UTC on 3 November is 00:30 on 4 November in Berlin (the mapping's zone); the
    approval time is the entry's updated_at (solidtime has no approval)."""
    _ingest(
        any_db,
        tmp_path,
        "solidtime",
        [DATA / "solidtime" / "time_entries.csv"],
        default_currency="EUR",
        source_timezone="Europe/Berlin",
    )
    row = any_db.query_df(
        "SELECT work_date, hours, bill_rate, approved_at_source FROM stg_time_entries "
        "WHERE row_key = '9b1c7a52-0001-4a8e-9f00-000000000002'"
    )
    assert [str(v) for v in row.values.tolist()[0]] == [
        "2026-11-04",
        "1.0000",
        "100.0100",
        "updated_at",
    ]


def test_the_source_zone_comes_from_the_settings(duck_db: StagingDB, tmp_path: Path) -> None:
    """The same solidtime export read with STAGEPOST_SOURCE_TIMEZONE=UTC: the 23:30 UTC start
    stays on 3 November (`timezone = "source"` in the shipped mapping)."""
    _ingest(
        duck_db,
        tmp_path,
        "solidtime",
        [DATA / "solidtime" / "time_entries.csv"],
        default_currency="EUR",
    )
    day = duck_db.scalar(
        "SELECT work_date FROM stg_time_entries "
        "WHERE row_key = '9b1c7a52-0001-4a8e-9f00-000000000002'"
    )
    assert str(day) == "2026-11-03"


def test_harvest_eu_account_with_decimal_commas(duck_db: StagingDB, tmp_path: Path) -> None:
    """An EU account's export: comma-separated, numbers quoted with decimal commas ("20,0",
    "2.000,0"); STAGEPOST_DECIMAL_COMMA reads them exactly (without it, type errors)."""
    header = (DATA / "harvest" / CASES["harvest"][0]).read_text(encoding="utf-8").splitlines()[0]
    rows = [
        '2026-11-02,Garage Leroy,Brochure,GL-01,Design,Cover,"20,0",Yes,No,Yes,Hélène,Bernard,,'
        'Designer,Yes,"100,0","2.000,0","45,0","900,0",Euro - EUR,',
        '2026-11-03,Garage Leroy,Brochure,GL-01,Design,Proofs,"7,5",Yes,No,Yes,Hélène,Bernard,,'
        'Designer,Yes,"95,0","712,5","45,0","337,5",Euro - EUR,',
    ]
    f = tmp_path / "src" / "harvest_time_report_from2026-11-01to2026-11-30.csv"
    f.parent.mkdir()
    f.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    _ingest(duck_db, tmp_path, "harvest", [f], decimal_comma=True)
    validate_all(duck_db, actor="test")
    got = duck_db.query_df(
        "SELECT s.hours, s.bill_rate, s.source_amount, v.amount FROM stg_time_entries s "
        "JOIN validated_time_entries v ON v.entry_id = s.row_key ORDER BY s.work_date"
    )
    assert got.values.tolist() == [
        [Decimal("20.0000"), Decimal("100.0000"), Decimal("2000.00"), Decimal("2000.00")],
        [Decimal("7.5000"), Decimal("95.0000"), Decimal("712.50"), Decimal("712.50")],
    ]


def test_mappings_are_selected_by_name_in_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.settings import SettingsError
    from connectors.sources.formats import SourceDefaults
    from connectors.sources.mapping import MAPPINGS_DIR
    from resources.settings import psa_source_resource

    monkeypatch.setenv("STAGEPOST_MAPPING", "toggl, kimai")
    monkeypatch.setenv("STAGEPOST_DEFAULT_CURRENCY", "EUR")
    monkeypatch.setenv("STAGEPOST_DEFAULT_LEGAL_ENTITY", "DE01")
    fmt = psa_source_resource().file_format()
    assert [m.origin for m in fmt.all_mappings] == ["toggl.toml", "kimai.toml"]
    assert fmt.defaults == SourceDefaults(legal_entity="DE01", currency="EUR")
    assert fmt.dataset_of(CASES["toggl"][0]) == fmt.dataset_of(CASES["kimai"][0]) == "time_entries"
    assert fmt.dataset_of(CASES["clockify"][0]) is None  # not one of the chosen vendors
    monkeypatch.setenv("STAGEPOST_MAPPING", str(MAPPINGS_DIR / "clockify.toml"))  # a path
    assert psa_source_resource().file_format().dataset_of(CASES["clockify"][0]) == "time_entries"
    monkeypatch.setenv("STAGEPOST_DEFAULT_CURRENCY", "euro")
    with pytest.raises(SettingsError, match="STAGEPOST_DEFAULT_CURRENCY"):
        psa_source_resource()


def test_solidtime_master_files_land_by_their_names_and_win_over_derived(
    any_db: StagingDB, tmp_path: Path
) -> None:
    """The unpacked solidtime export: members.csv, projects.csv and tasks.csv land as
    employees, projects and tasks through the same mapping (names, billability, archived
    projects), and the master data derived from time_entries.csv keeps out of their way."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("members.csv", "projects.csv", "tasks.csv", "time_entries.csv"):
        shutil.copy2(DATA / "solidtime" / name, inbox / name)
    psa = PsaSource(
        inbox=str(inbox),
        mapping_file="solidtime",
        stable_seconds=0,
        default_legal_entity="DE01",
        default_currency="EUR",
        source_timezone="Europe/Berlin",
    )
    fmt = psa.file_format()
    with psa.open() as source:
        for dataset in ("employees", "projects", "project_tasks", "time_entries"):
            report = ingest_dataset(any_db, source, dataset, fmt=fmt, workdir=tmp_path / "w")
            assert not report.refused and not report.failures
    validate_all(any_db, actor="test")
    employees = any_db.query_df(
        "SELECT row_key, employee_name, role, legal_entity, version FROM stg_employees "
        "WHERE is_current ORDER BY row_key"
    )
    assert employees.values.tolist() == [
        ["m-anna", "Anna Berg", "admin", "DE01", 1],
        ["m-ben", "Ben Cole", "employee", "DE01", 1],
    ]
    projects = any_db.query_df(
        "SELECT row_key, project_name, billing_method, status, currency, state FROM stg_projects "
        "WHERE is_current ORDER BY row_key"
    )
    assert projects.values.tolist() == [
        ["p-ops", "Operations", "non_billable", "open", "EUR", "valid"],
        ["p-web", "Website relaunch", "time_and_materials", "open", "EUR", "valid"],
    ]
    tasks = any_db.query_df(
        "SELECT project_code, task_code, task_name FROM stg_project_tasks WHERE is_current "
        "ORDER BY project_code, task_code"
    )
    assert tasks.values.tolist() == [
        ["p-ops", "general", None],  # derived: the entries' default task
        ["p-web", "general", None],
        ["p-web", "t-design", "Design"],  # the file's
    ]
    assert _states(any_db) == {"valid": 3, "quarantined": 1}
    derived = any_db.query_df(
        "SELECT dataset, rows_new_version, rows_unchanged FROM loads "
        "WHERE source_name = 'psa (derived)' ORDER BY dataset"
    )
    assert derived.values.tolist() == [
        ["employees", 0, 2],  # both members came from members.csv first
        ["project_tasks", 2, 1],
        ["projects", 0, 2],
    ]


def test_reconciliation_reads_a_vendor_export_not_landed_yet(
    duck_db: StagingDB, tmp_path: Path
) -> None:
    """A Toggl export under its own name, complete in the inbox but not landed: reconciliation
    reads its rows as landing would (the name picks the mapping), so each entry is compared as
    `not yet staged` instead of the file being skipped as no dataset's."""
    from reconciliation.psa_files import unlanded_rows

    file, _, rows, *_ = CASES["toggl"]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy2(DATA / "toggl" / file, inbox / file)
    psa = PsaSource(
        inbox=str(inbox), mapping_file="toggl", stable_seconds=0, default_legal_entity="DE01"
    )
    with psa.open() as source:
        found = unlanded_rows(duck_db, source, fmt=psa.file_format(), workdir=tmp_path / "w")
    assert found.problems == []
    assert found.rows.num_rows == rows
    assert set(found.rows.column("file_name").to_pylist()) == {file}
    _ingest(duck_db, tmp_path, "toggl", [DATA / "toggl" / file])
    with psa.open() as source:
        again = unlanded_rows(duck_db, source, fmt=psa.file_format(), workdir=tmp_path / "w2")
    assert again.rows.num_rows == 0  # landed now: nothing left unlanded
