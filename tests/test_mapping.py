"""Vendor column mappings: the shipped Harvest mapping, each transform, and refusals."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from connectors.sources.canonical import TIME_ENTRIES
from connectors.sources.formats import FileFormat, FileFormatError, open_raw
from connectors.sources.mapping import (
    MAPPINGS_DIR,
    MappingError,
    SourceMapping,
    load_mapping,
    parse_mapping,
)
from resources.psa_source import PsaSource
from staging_models.db import StagingDB
from staging_models.landing import LandingError, land_file
from tests.support.harvest import (
    HARVEST_COLUMNS,
    HARVEST_HOURS,
    HARVEST_ROWS,
    harvest_row,
    write_harvest_csv,
    write_harvest_xlsx,
)
from tests.support.mapping_examples import MAPPING_EXAMPLES
from tests.support.staging_helpers import World

HARVEST = load_mapping("harvest")
HARVEST_FMT = FileFormat(mapping=HARVEST)


def counts(db: StagingDB) -> tuple[int, int]:
    return (
        db.scalar("SELECT COUNT(*) FROM land_time_entries"),
        db.scalar("SELECT COUNT(*) FROM stg_time_entries"),
    )


def test_shipped_harvest_mapping_lands_a_detailed_time_export(any_db: StagingDB, tmp_path: Path):
    f = write_harvest_csv(tmp_path / "time_entries_harvest_2026-11.csv", HARVEST_ROWS)
    r = land_file(any_db, f, "time_entries", fmt=HARVEST_FMT)
    assert (r.rows_read, r.rows_new_version) == (5, 5)
    df = any_db.query_df(
        "SELECT entry_id, employee_id, employee_name, project_code, task_code, work_date, hours, "
        "raw_hours, billable, bill_rate, currency, approval_status, description, deleted, "
        "type_errors FROM land_time_entries ORDER BY row_no"
    )
    assert df["type_errors"].isna().all()
    assert df["raw_hours"].tolist() == HARVEST_HOURS  # "2:30" -> "2.50", exactly, as text
    assert df["hours"].tolist() == [Decimal(h) for h in HARVEST_HOURS]
    assert df["employee_id"].tolist()[:2] == ["Hélène Bernard", "Julien Roux"]
    assert df["employee_name"].tolist() == df["employee_id"].tolist()
    assert df["project_code"].tolist()[:2] == ["GL-01", "Internal"]  # no code: the name
    assert df["task_code"].tolist()[:2] == ["Design", "Meetings"]
    assert [str(d) for d in df["work_date"]] == [
        "2026-11-02",
        "2026-11-03",
        "2026-11-04",
        "2026-11-04",
        "2026-11-05",
    ]
    assert df["billable"].tolist() == [True, False, True, True, True]
    assert df["bill_rate"].tolist()[0] == Decimal("95")
    assert df["currency"].tolist() == ["EUR"] * 4 + ["USD"]
    assert df["approval_status"].tolist() == [
        "approved",
        "draft",
        "approved",
        "approved",
        "approved",
    ]
    assert df["description"].tolist()[1] == "Kick-off, then\nplanning"
    assert not df["deleted"].any()
    ids = df["entry_id"].tolist()
    assert all(i.startswith("harvest-") for i in ids) and len(set(ids)) == 5
    assert ids[2][:-2] == ids[3][:-2] and (ids[2][-2:], ids[3][-2:]) == ("-1", "-2")

    # The next month's export repeats the rows (in another order, with one correction and
    # one new entry): the same IDs, so one new version and one new entry, nothing doubled.
    again = [HARVEST_ROWS[4], HARVEST_ROWS[0], HARVEST_ROWS[2], HARVEST_ROWS[3]]
    again += [harvest_row(**{**HARVEST_ROWS[1], "Hours": "1:45"})]  # corrected
    again += [harvest_row(Date="11/06/2026", Notes="Print run")]
    r2 = land_file(
        any_db,
        write_harvest_csv(tmp_path / "time_entries_harvest_2.csv", again),
        "time_entries",
        fmt=HARVEST_FMT,
    )
    assert (r2.rows_read, r2.rows_new_version, r2.rows_unchanged) == (6, 2, 4)
    v = any_db.query_df(
        "SELECT version, hours FROM stg_time_entries WHERE entry_id = :e ORDER BY version",
        {"e": ids[1]},
    )
    assert v["hours"].tolist() == [Decimal("1.25"), Decimal("1.75")]


def test_harvest_xlsx_with_serial_dates_stages_the_same_as_csv(duck_db: StagingDB, tmp_path: Path):
    csv_file = write_harvest_csv(tmp_path / "time_entries_1.csv", HARVEST_ROWS)
    xlsx_file = write_harvest_xlsx(tmp_path / "time_entries_1.xlsx", HARVEST_ROWS)
    land_file(duck_db, csv_file, "time_entries", fmt=HARVEST_FMT)
    r = land_file(duck_db, xlsx_file, "time_entries", fmt=HARVEST_FMT)
    # Same IDs, same content hash: the spreadsheet copy is not a new version of anything.
    assert (r.rows_read, r.rows_new_version, r.rows_unchanged) == (5, 0, 5)


def test_header_matching_ignores_case_order_and_extra_columns(duck_db: StagingDB, tmp_path: Path):
    cols = ["Employee Id", "Teams", *reversed(HARVEST_COLUMNS)]  # newer accounts add two
    header = [c.upper() if i % 2 else c for i, c in enumerate(cols)]
    rows = [{h: r.get(c, "x") for h, c in zip(header, cols, strict=True)} for r in HARVEST_ROWS]
    f = write_harvest_csv(tmp_path / "time_entries_1.csv", rows, header, encoding="utf-8-sig")
    r = land_file(duck_db, f, "time_entries", fmt=HARVEST_FMT)
    assert r.rows_read == 5
    assert duck_db.scalar("SELECT COUNT(*) FROM land_time_entries WHERE type_errors IS NULL") == 5


def _mapping(toml: str, origin: str = "test_vendor.toml") -> SourceMapping:
    return parse_mapping(tomllib.loads(toml), origin)


def _mapped(mapping: SourceMapping, csv_text: str, tmp_path: Path, **fmt) -> list[tuple]:
    """The canonical view's rows for a small CSV (entry_id first), read through `mapping`."""
    path = tmp_path / "time_entries_1.csv"
    path.write_text(csv_text, encoding="utf-8")
    con = duckdb.connect()
    view = open_raw(
        con, path, TIME_ENTRIES, FileFormat(mapping=mapping, **fmt), workdir=tmp_path / "w"
    )
    return con.execute(f"SELECT * EXCLUDE (_row_no) FROM {view} ORDER BY _row_no").fetchall()


def _col(rows: list[tuple], name: str) -> list:
    i = TIME_ENTRIES.column_names.index(name)
    return [r[i] for r in rows]


def test_transforms(tmp_path: Path) -> None:
    m = _mapping(MAPPING_EXAMPLES["transforms"])
    csv_text = (
        "ID,Person,First,Last,Day,Duration,Approved,Changed,State,Billable,Cur,Task,Activity\n"
        "1,ann,Ann,Lee,02.11.2026,2:30,29.03.2026 02:30,2026-11-03 09:00,Freigegeben,JA,Euro (EUR),T1,\n"
        "2,bob,,Kim,3 Nov 2026,0:01:30,25.10.2026 02:30,2026-11-03T09:00:00+01:00,offen,Nein,,,A7\n"
        "3,cy,Cy,,31.02.2026,7.5,,2026-07-01 12:00:00,Storniert,maybe,USD,,\n"
        "4,dee,Dee,Lo,2026-11-04,25:00,03.11.2026 9:00,junk,,,Swiss Franc (CHF),,\n"
    )
    rows = _mapped(m, csv_text, tmp_path)
    assert _col(rows, "employee_id") == ["ANN", "BOB", "CY", "DEE"]
    assert _col(rows, "employee_name") == ["Lee, Ann", "Kim", "Cy", "Lo, Dee"]  # empties skipped
    # ISO dates are always accepted; an impossible date stays raw for typing to report.
    assert _col(rows, "work_date") == ["2026-11-02", "2026-11-03", "31.02.2026", "2026-11-04"]
    assert _col(rows, "hours") == ["2.50", "0.025", "7.5", "25.00"]
    # Naive local times keep their wall clock and get the zone's offset at that instant (DST
    # gap and overlap resolved to the later offset: 01:30 UTC both), never turned into UTC.
    assert _col(rows, "approved_at") == [
        "2026-03-29T02:30:00+01:00",
        "2026-10-25T02:30:00+01:00",
        None,
        "2026-11-03T09:00:00+01:00",
    ]
    # Values that carry an offset are kept; unparsable text stays raw (typing reports it).
    assert _col(rows, "updated_at") == [
        "2026-11-03T09:00:00-05:00",
        "2026-11-03T09:00:00+01:00",
        "2026-07-01T12:00:00-04:00",
        "junk",
    ]
    assert _col(rows, "approval_status") == ["approved", "submitted", None, None]
    assert _col(rows, "billable") == ["true", "false", "maybe", None]  # unmapped kept: typing flags
    assert _col(rows, "currency") == ["EUR", "EUR", "USD", "CHF"]  # no match: kept; empty: default
    assert _col(rows, "task_code") == ["T1", "A7", None, None]
    assert _col(rows, "project_code") == ["P-1"] * 4
    assert _col(rows, "deleted") == ["false"] * 4
    assert _col(rows, "description") == [None] * 4  # not mapped: NULL


def test_date_only_timestamp_is_midnight_in_the_mappings_zone(
    duck_db: StagingDB, tmp_path: Path
) -> None:
    """`2023-01-23` is a date, not a time with the offset `-23`: it is midnight where the
    mapping says the export was written (it used to pass through and type in DuckDB's zone)."""
    m = _mapping(MAPPING_EXAMPLES["date_only_timestamp"])
    rows = _mapped(m, "ID,A\n1,2023-01-23\n2,2023-07-04\n", tmp_path)
    assert _col(rows, "approved_at") == ["2023-01-23T00:00:00-05:00", "2023-07-04T00:00:00-04:00"]
    f = tmp_path / "time_entries_2.csv"
    f.write_text("ID,A\n1,2023-01-23\n", encoding="utf-8")
    land_file(duck_db, f, "time_entries", fmt=FileFormat(mapping=m))
    got = duck_db.scalar(
        "SELECT CAST(timezone('UTC', approved_at) AS VARCHAR) FROM land_time_entries"
    )
    assert got == "2023-01-23 05:00:00"


def test_local_approval_keeps_the_approvers_offset_to_validation(
    any_db: StagingDB, tmp_path: Path
) -> None:
    """Approved in Tokyo at 08:30 on the work date: 23:30 UTC the day before, but the rule
    compares the approver's local date, so the mapping must hand over the local time with
    its offset, not UTC text (which quarantined it as TE_APPROVED_BEFORE_WORK)."""
    world = World(any_db, tmp_path).master()
    m = _mapping(MAPPING_EXAMPLES["tokyo"])
    f = tmp_path / "time_entries_tokyo.csv"
    f.write_text(
        "ID,Day,Hours,Approved\n"
        "MORNING,03/11/2026,7.5,03/11/2026 08:30\n"  # 2026-11-02 23:30 UTC
        "GIVEN,04/11/2026,7.5,2026-11-04T08:30:00+09:00\n"  # the source's own offset, kept
        "EVE,05/11/2026,7.5,04/11/2026 23:30\n",  # the evening before, in Tokyo
        encoding="utf-8",
    )
    land_file(any_db, f, "time_entries", fmt=FileFormat(mapping=m))
    world.validate()
    raw = any_db.query_df("SELECT entry_id, raw_approved_at FROM land_time_entries ORDER BY row_no")
    assert raw["raw_approved_at"].tolist() == [
        "2026-11-03T08:30:00+09:00",
        "2026-11-04T08:30:00+09:00",
        "2026-11-04T23:30:00+09:00",
    ]
    assert (world.state("MORNING"), world.state("GIVEN")) == ("valid", "valid")
    assert world.codes("EVE") == {"TE_APPROVED_BEFORE_WORK"}
    assert any_db.scalar("SELECT messages FROM quarantine WHERE row_key = 'EVE'") == (
        "approved on 2026-11-04, the date of 2026-11-04T23:30:00+09:00 at the UTC offset "
        "written with it, before the work date 2026-11-05"
    )
    instant = any_db.scalar(
        "SELECT approved_at FROM validated_time_entries WHERE entry_id = 'MORNING'"
    )
    assert instant == datetime(2026, 11, 2, 23, 30, tzinfo=UTC)  # the instant is unchanged


def test_day_first_mapping_refuses_a_month_first_file_naming_the_column(
    any_db: StagingDB, tmp_path: Path
) -> None:
    """`03/04/2024` reads as 3 April in a DD/MM mapping; `12/25/2024` in the same column
    shows the file is MM/DD, so the whole file is refused rather than misread."""
    m = _mapping(MAPPING_EXAMPLES["day_first"])
    ok = tmp_path / "time_entries_1.csv"
    ok.write_text("ID,Date\n1,03/04/2024\n2,25/12/2024\n", encoding="utf-8")
    land_file(any_db, ok, "time_entries", fmt=FileFormat(mapping=m))
    before = counts(any_db)
    bad = tmp_path / "time_entries_2.csv"
    bad.write_text("ID,Date\n3,03/04/2024\n4,12/25/2024\n5,01/02/2024\n", encoding="utf-8")
    with pytest.raises(
        LandingError,
        match=r"time_entries_2.csv: column 'Date' \(for work_date\) has the value 12/25/2024 "
        r"\(row 3\), which is not %d/%m/%Y but is %m/%d/%Y: the file writes day and month the "
        r"other way round",
    ):
        land_file(any_db, bad, "time_entries", fmt=FileFormat(mapping=m))
    assert counts(any_db) == before
    dates = any_db.query_df("SELECT CAST(work_date AS VARCHAR) AS d FROM land_time_entries")
    assert sorted(dates["d"]) == ["2024-04-03", "2024-12-25"]


def test_day_month_order_is_checked_for_timestamps_and_the_harvest_mapping(tmp_path: Path):
    m = _mapping(MAPPING_EXAMPLES["month_first_timestamp"])
    with pytest.raises(duckdb.Error, match=r"column 'At' \(for approved_at\) has the value "):
        _mapped(m, "ID,At\n1,01/02/2026 09:00\n2,25/01/2026 09:00\n", tmp_path)
    # A day-first account's Harvest export fed to the shipped (month-first) mapping.
    rows = [harvest_row(Date="02/11/2026"), harvest_row(Date="25/11/2026")]
    f = write_harvest_csv(tmp_path / "time_entries_eu.csv", rows)
    con = duckdb.connect()
    view = open_raw(con, f, TIME_ENTRIES, HARVEST_FMT, workdir=tmp_path / "w")
    with pytest.raises(duckdb.Error, match=r"column 'Date' \(for work_date\) has the value 25/11"):
        con.execute(f"SELECT * FROM {view}").fetchall()


def test_decimal_comma_applies_after_mapping(tmp_path: Path) -> None:
    m = _mapping(MAPPING_EXAMPLES["decimal_comma"])
    rows = _mapped(
        m, "ID;h;Rate\n1;7,5;1.234,50\n2;1:15;99\n", tmp_path, delimiter=";", decimal_comma=True
    )
    assert _col(rows, "hours") == ["7.5", "1.25"]
    assert _col(rows, "bill_rate") == ["1234.50", "99"]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[time_entries]\nentry_id = "ID"\nbilable = "B"',
            r"\[time_entries.bilable\]: 'bilable' is not a canonical time_entries column",
        ),
        (
            '[time_entries]\nentry_id = "ID"\nhours = { source = "H", transform = "minutes" }',
            r"\[time_entries.hours\]: unknown transform 'minutes'",
        ),
        (
            '[time_entries]\nentry_id = "ID"\nwork_date = { source = "D", transform = "hours" }',
            r"\[time_entries.work_date\]: transform 'hours' cannot feed work_date \(a date column",
        ),
        (
            '[time_entries]\nentry_id = "ID"\nwork_date = { source = "D", transform = "date", format = "%m/%Q/%Y" }',
            r"\[time_entries.work_date\]: bad format: .*%Q",
        ),
        (
            '[time_entries]\nentry_id = "ID"\nwork_date = { source = "D", transform = "date" }',
            r"\[time_entries.work_date\]: transform 'date' needs format",
        ),
        (
            '[time_entries]\nentry_id = "ID"\napproved_at = { source = "A", transform = "timestamp", timezone = "Mars/Olympus" }',
            r"\[time_entries.approved_at\]: bad timezone 'Mars/Olympus'",
        ),
        (
            '[time_entries]\nentry_id = "ID"\ncurrency = { source = "C", transform = "extract", pattern = "([A-Z" }',
            r"\[time_entries.currency\]: bad pattern",
        ),
        (
            '[time_entries]\nentry_id = "ID"\nbillable = { source = "B", value = { Yes = true } }',
            r"\[time_entries.billable\]: unknown key\(s\) value",
        ),
        (
            '[time_entries]\nentry_id = "ID"\nbillable = { source = "B", unmapped = "error" }',
            r"unmapped only applies with values",
        ),
        (
            '[time_entries]\nentry_id = "ID"\nbillable = { source = "B", concat = ["C"] }',
            r"needs exactly one of",
        ),
        (
            '[time_entries]\nentry_id = "ID"\ndeleted = { constant = false, default = "x" }',
            r"a constant takes only when and otherwise",
        ),
        (
            '[time_entries]\nentry_id = { identity = ["Date", "work_date"] }\nwork_date = "Date"',
            r"\[time_entries.entry_id\]: identity lists 'Date'",
        ),
        (
            '[time_entries]\nhours = "Hours"',
            r"\[time_entries\] does not map key column\(s\) entry_id",
        ),
        (
            '[time_entries]\nentry_id = "ID"\nwork_date = { source = "D", transform = "date", format = 5 }',
            r"\[time_entries.work_date\]: format must be a strptime format",
        ),
        (
            '[time_entries]\nentry_id = "ID"\ncurrency = { source = "C", transform = "extract", pattern = 3 }',
            r"\[time_entries.currency\]: pattern must be a string \(a regex with one group\)",
        ),
        (
            '[time_entries]\nentry_id = "ID"\ndescription = { source = "N", optional = "yes" }',
            r"\[time_entries.description\]: optional must be true or false",
        ),
        (
            '[time_entries]\nentry_id = "ID"\ndescription = { source = "N", format = "%Y" }',
            r"\[time_entries.description\]: format only applies to transform date or timestamp",
        ),
        (
            '[time_entries]\nentry_id = "ID"\ndescription = { source = "N", values = { A = 1, a = 2 } }',
            r"\[time_entries.description\]: values lists 'a' twice",
        ),
        (
            '[time_entries]\nentry_id = "ID"\ndescription = { source = "N", values = { A = [1] } }',
            r"\[time_entries.description\]: values.A must be a string, number or boolean",
        ),
        ('[timesheets]\nentry_id = "ID"', r"\[timesheets\] is not a dataset"),
        ('name = "x"', r"maps no dataset"),
    ],
)
def test_invalid_mapping_is_refused_naming_file_and_column(toml: str, message: str) -> None:
    with pytest.raises(MappingError, match=r"mapping vendor\.toml: .*" + message):
        _mapping(toml, "vendor.toml")


def test_mapping_files_are_found_by_path_or_shipped_name(tmp_path: Path) -> None:
    assert (MAPPINGS_DIR / "harvest.toml").is_file()
    own = tmp_path / "acme.toml"
    own.write_text('[time_entries]\nentry_id = "Ref"\n')
    assert load_mapping(own).for_dataset("time_entries").rules[0].sources == ("Ref",)
    with pytest.raises(MappingError, match="does not exist .*harvest"):
        load_mapping(tmp_path / "missing.toml")
    with pytest.raises(MappingError, match=r"mapping broken.toml: not valid TOML"):
        (tmp_path / "broken.toml").write_text("[time_entries\n")
        load_mapping(tmp_path / "broken.toml")


def test_psa_source_builds_the_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from resources.settings import psa_source_resource

    monkeypatch.setenv("STAGEPOST_MAPPING_FILE", "harvest_detailed_time")
    monkeypatch.setenv("STAGEPOST_DELIMITER", "tab")
    res = psa_source_resource()
    fmt = res.file_format()
    assert fmt.delimiter == "\t"
    assert fmt.mapping is not None and fmt.mapping_for("time_entries") is not None
    assert fmt.mapping_for("employees") is None  # other datasets stay canonical
    bad = tmp_path / "bad.toml"
    bad.write_text('[time_entries]\nentry_id = "ID"\nhours = { source = "H", transform = "x" }\n')
    with pytest.raises(MappingError, match=r"mapping bad.toml: \[time_entries.hours\]"):
        PsaSource(mapping_file=str(bad)).file_format()


def test_ambiguous_header_is_refused(tmp_path: Path) -> None:
    m = _mapping(MAPPING_EXAMPLES["ambiguous_header"])
    with pytest.raises(
        FileFormatError, match=r"column 'Notes' \(for description\) appears 2 times"
    ):
        _mapped(m, "ID,Notes,NOTES,Other,other\n1,a,b,c,d\n", tmp_path)
    assert _col(_mapped(m, "ID,Notes,Other,other\n1,a,c,d\n", tmp_path), "description") == ["a"]


def test_sftp_settings_wait_for_stable_files(monkeypatch: pytest.MonkeyPatch) -> None:
    from resources.settings import psa_source_resource

    monkeypatch.setenv("STAGEPOST_SOURCE_KIND", "sftp")
    assert psa_source_resource().stable_seconds == 5  # a sender may still be writing
    monkeypatch.setenv("STAGEPOST_STABLE_SECONDS", "0")
    assert psa_source_resource().stable_seconds == 0
    monkeypatch.setenv("STAGEPOST_SOURCE_KIND", "local")
    monkeypatch.delenv("STAGEPOST_STABLE_SECONDS")
    assert psa_source_resource().stable_seconds == 5  # a local writer may be mid-file too


def test_file_missing_a_mapped_column_is_refused_and_nothing_lands(
    any_db: StagingDB, tmp_path: Path
) -> None:
    cols = [c for c in HARVEST_COLUMNS if c != "Billable?"]
    f = write_harvest_csv(tmp_path / "time_entries_1.csv", HARVEST_ROWS, cols)
    with pytest.raises(
        LandingError,
        match=r"time_entries_1.csv: missing column\(s\) 'Billable\?' \(for billable\) required "
        r"by mapping harvest.toml \[time_entries\]",
    ) as err:
        land_file(any_db, f, "time_entries", fmt=HARVEST_FMT)
    assert isinstance(err.value.__cause__, FileFormatError)
    assert counts(any_db) == (0, 0)
    loads = any_db.query_df("SELECT file_name, status, message FROM loads")
    assert loads[["file_name", "status"]].values.tolist() == [["time_entries_1.csv", "refused"]]
    assert "Billable?" in loads["message"][0]


def test_value_refused_mid_file_lands_nothing_from_that_file(any_db: StagingDB, tmp_path: Path):
    """land_file is one transaction: a row the mapping refuses halfway through the file (an
    `unmapped = "error"` value map) leaves no land_ or stg_ rows, only the failed load."""
    strict = _mapping(MAPPING_EXAMPLES["harvest_strict"], "harvest_strict.toml")
    good = write_harvest_csv(tmp_path / "time_entries_1.csv", HARVEST_ROWS[:2])
    land_file(any_db, good, "time_entries", fmt=FileFormat(mapping=strict))
    before = counts(any_db)
    rows = [*HARVEST_ROWS, harvest_row(Billable="Pending"), harvest_row(Notes="after")]
    bad = write_harvest_csv(tmp_path / "time_entries_2.csv", rows)
    with pytest.raises(
        LandingError,
        match=r"time_entries_2.csv: column 'Billable\?' has the value Pending that mapping "
        r"harvest_strict.toml does not map for billable \(row 7\)",
    ):
        land_file(any_db, bad, "time_entries", fmt=FileFormat(mapping=strict))
    assert counts(any_db) == before
    statuses = any_db.query_df(
        "SELECT file_name, status FROM loads WHERE dataset = 'time_entries' ORDER BY started_at"
    )
    assert statuses.values.tolist() == [
        ["time_entries_1.csv", "landed"],
        ["time_entries_2.csv", "refused"],
    ]
