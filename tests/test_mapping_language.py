"""The mapping language's additions for real vendor exports (issue 14): conditionals, exact
arithmetic, stable keys, header values, duration and number spellings, local dates, approval
policies, file names, formats and header aliases per mapping, and refusals that name the
mapping file, the field and what is expected. Each compiles to DuckDB SQL (no row loop)."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from connectors.sources.canonical import DATASETS, TIME_ENTRIES
from connectors.sources.formats import FileFormat, open_raw
from connectors.sources.mapping import MappingError, SourceMapping, parse_mapping


def _mapping(toml: str, origin: str = "vendor.toml") -> SourceMapping:
    return parse_mapping(tomllib.loads(toml), origin)


def _rows(m: SourceMapping, text: str, tmp_path: Path, name: str = "time_entries_1.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    con = duckdb.connect()
    view = open_raw(con, path, TIME_ENTRIES, FileFormat(mapping=m), workdir=tmp_path / "w")
    cols = TIME_ENTRIES.column_names
    out = con.execute(f"SELECT {', '.join(cols)} FROM {view} ORDER BY _row_no").fetchall()
    return [dict(zip(cols, r, strict=True)) for r in out]


def test_durations_in_every_spelling_give_exact_seconds_and_hours(tmp_path: Path) -> None:
    m = _mapping(
        """
        [time_entries]
        entry_id = "ID"
        duration_seconds = { source = "D", transform = "seconds" }
        hours = { source = "D", transform = "hours" }
        """
    )
    spellings = ["2:30", "2:14:54", "1h 30m", "90m", "PT1H30M", "PT45M10S", "1h", "7.5"]
    text = "ID,D\n" + "".join(f"{i},{s}\n" for i, s in enumerate(spellings))
    rows = _rows(m, text, tmp_path)
    assert [r["duration_seconds"] for r in rows] == [
        "9000",
        "8094",
        "5400",
        "5400",
        "5400",
        "2710",
        "3600",
        "7.5",
    ]  # a decimal is hours, not seconds: typing reports it in duration_seconds
    assert [r["hours"] for r in rows] == [
        "2.50",
        "2.2483",
        "1.50",
        "1.50",
        "1.50",
        "0.7528",
        "1.00",
        "7.5",
    ]


def test_numbers_with_group_separators(tmp_path: Path) -> None:
    m = _mapping(
        """
        [time_entries]
        entry_id = "ID"
        bill_rate = { source = "US", transform = "number" }
        source_amount = { source = "EU", transform = "number", decimal = "," }
        """
    )
    rows = _rows(m, 'ID,US,EU\n1,"1,200.0","2.000,0"\n2,7.5,"20,0"\n3,abc,"1 200,5"\n', tmp_path)
    assert [(r["bill_rate"], r["source_amount"]) for r in rows] == [
        ("1200.0", "2000.0"),
        ("7.5", "20.0"),
        ("abc", "1200.5"),  # not a number: kept for typing to report
    ]


def test_arithmetic_is_exact_and_rounded_once(tmp_path: Path) -> None:
    """rate = amount / hours, duration = end - start, cents to units: exact decimals (no
    float), rounded half away from zero to the target's scale; a division by zero is empty."""
    m = _mapping(
        """
        [time_entries]
        entry_id = "ID"
        _start = { source = "Start", transform = "timestamp", timezone = "Europe/Berlin" }
        _end = { source = "End", transform = "timestamp", timezone = "Europe/Berlin" }
        duration_seconds = { expr = "seconds_between(_start, _end)" }
        hours = { expr = "hours_between(_start, _end)" }
        source_amount = "Amount"
        bill_rate = { expr = "source_amount * 3600 / duration_seconds" }
        _cents = "Cents"
        fixed_amount = { expr = "round(coalesce(_cents, 0) / 100, 1) + -0.05" }
        """
    )
    text = (
        "ID,Start,End,Amount,Cents\n"
        "1,2026-11-02 09:00:00,2026-11-02 11:14:54,168.63,10001\n"
        "2,2026-03-29 01:30:00,2026-03-29 03:30:00,100.00,\n"  # DST: one real hour
        "3,2026-11-02 09:00:00,2026-11-02 09:00:00,0,\n"
    )
    rows = _rows(m, text, tmp_path)
    assert [r["duration_seconds"] for r in rows] == ["8094", "3600", "0"]
    assert [r["hours"] for r in rows] == ["2.2483", "1.0000", "0.0000"]
    assert [r["bill_rate"] for r in rows] == ["75.0022", "100.0000", None]
    assert [r["fixed_amount"] for r in rows] == ["99.95", "-0.05", "-0.05"]
    # The derived rate gives back the PSA's amount to the cent.
    assert round(Decimal("8094") * Decimal("75.0022") / 3600, 2) == Decimal("168.63")


def test_conditionals_constants_and_header_values(tmp_path: Path) -> None:
    m = _mapping(
        """
        [time_entries]
        entry_id = "ID"
        fixed_amount = { source = "Fixed", when = { column = "Fixed", set = true } }
        approval_status = { constant = "approved", when = { column = "State", in = ["ok", "DONE"] }, otherwise = "submitted" }
        approved_by = { constant = "lead", when = { column = "State", not_in = ["ok", "done"] } }
        currency = { header = "Amount (*)" }
        description = { source = "Amount (*)" }
        """
    )
    rows = _rows(m, "ID,Fixed,State,Amount (CHF)\n1,150,Done,9\n2,,open,8\n3,,,7\n", tmp_path)
    assert [r["fixed_amount"] for r in rows] == ["150", None, None]
    assert [r["approval_status"] for r in rows] == ["approved", "submitted", "submitted"]
    assert [r["approved_by"] for r in rows] == [None, "lead", "lead"]
    assert [r["currency"] for r in rows] == ["CHF"] * 3
    assert [r["description"] for r in rows] == ["9", "8", "7"]
    empty = _rows(m, "ID,Fixed,State,Amount ()\n1,,ok,1\n", tmp_path, "time_entries_2.csv")
    assert empty[0]["currency"] is None  # `Amount ()`: no currency, never a guess


def test_stable_key_ignores_the_rows_position(tmp_path: Path) -> None:
    m = _mapping(
        """
        [time_entries]
        _start = { concat = ["Date", "From"], separator = " " }
        employee_id = "User"
        entry_id = { key = ["employee_id", "_start"], prefix = "k-" }
        """
    )
    full = _rows(m, "User,Date,From\na,2026-11-02,09:00\na,2026-11-02,13:00\n", tmp_path)
    later = _rows(m, "User,Date,From\na,2026-11-02,13:00\n", tmp_path, "time_entries_2.csv")
    assert later[0]["entry_id"] == full[1]["entry_id"] != full[0]["entry_id"]
    assert full[0]["entry_id"].startswith("k-")


def test_local_date_of_an_instant(tmp_path: Path) -> None:
    m = _mapping(
        """
        [time_entries]
        entry_id = "ID"
        work_date = { source = "Start", transform = "local_date", timezone = "Europe/Berlin" }
        """
    )
    rows = _rows(
        m,
        "ID,Start\n1,2026-11-03T23:30:00Z\n2,2026-11-03T22:59:59Z\n3,2026-11-03 23:30:00\n"
        "4,2026-11-04T00:30:00+09:00\n",
        tmp_path,
    )
    assert [r["work_date"] for r in rows] == [
        "2026-11-04",
        "2026-11-03",
        "2026-11-04",
        "2026-11-03",
    ]


def test_approval_policy_becomes_rules(tmp_path: Path) -> None:
    m = _mapping(
        """
        [time_entries]
        entry_id = "ID"
        [time_entries.approval]
        column = "Locked"
        approved = ["yes"]
        approved_at = "column"
        approved_at_column = "Locked at"
        format = "%d.%m.%Y %H:%M"
        timezone = "Europe/Berlin"
        approved_by = "harvest lock"
        """
    )
    rows = _rows(m, "ID,Locked,Locked at\n1,Yes,03.11.2026 18:00\n2,No,\n", tmp_path)
    assert [
        (r["approval_status"], r["approved_at"], r["approved_at_source"], r["approved_by"])
        for r in rows
    ] == [
        ("approved", "2026-11-03T18:00:00+01:00", "column:Locked at", "harvest lock"),
        ("submitted", None, None, None),
    ]


def test_files_format_and_header_aliases_per_mapping(tmp_path: Path) -> None:
    m = _mapping(
        """
        [format]
        delimiter = ";"
        decimal_comma = true
        [headers]
        Dauer = "Duration"
        [time_entries]
        files = "export-*.csv"
        entry_id = "ID"
        hours = { source = "Duration", transform = "hours" }
        bill_rate = "Rate"
        """
    )
    fmt = FileFormat(mapping=m)  # the source's own settings: comma, no decimal comma
    assert fmt.dataset_of("export-2026.csv") == "time_entries"
    assert fmt.dataset_of("projects.csv") == "projects"
    assert fmt.mapping_for("projects", "projects.csv") is None  # canonical master data
    path = tmp_path / "export-2026.csv"
    path.write_text("ID;Dauer;Rate\n1;1:30;95,50\n", encoding="utf-8")
    con = duckdb.connect()
    view = open_raw(con, path, DATASETS["time_entries"], fmt, workdir=tmp_path / "w")
    assert con.execute(f"SELECT hours, bill_rate FROM {view}").fetchall() == [("1.50", "95.50")]


@pytest.mark.parametrize(
    "toml,message",
    [
        (
            '[time_entries]\nentry_id = "ID"\nhours = { expr = "Hours * 2" }',
            r"\[time_entries\.hours\]: expr lists 'Hours': it takes canonical time_entries "
            r"columns \(or _helper columns\)",
        ),
        (
            '[time_entries]\nentry_id = "ID"\nhours = { expr = "sqrt(x)" }',
            r"\[time_entries\.hours\]: expr 'sqrt\(x\)': functions are seconds_between",
        ),
        (
            '[time_entries]\nentry_id = "ID"\nhours = { expr = "__import__" }\n',
            r"\[time_entries\.hours\]: expr lists '__import__'",
        ),
        (
            '[time_entries]\nentry_id = "ID"\nhours = { expr = "bill_rate" }\n'
            'bill_rate = { expr = "hours" }',
            r"\[time_entries\] columns refer to each other in a circle",
        ),
        (
            '[time_entries]\nentry_id = "ID"\nbill_rate = { source = "R", when = { column = "X" } }',
            r"\[time_entries\.bill_rate\]: when takes a column and exactly one of in, not_in, set",
        ),
        (
            '[time_entries]\nentry_id = "ID"\nbill_rate = { source = "R", otherwise = "1" }',
            r"\[time_entries\.bill_rate\]: otherwise only applies with when",
        ),
        (
            '[time_entries]\nentry_id = "ID"\n[time_entries.approval]\ncolumn = "A"\n'
            'approved_at = "export_time"',
            r"\[time_entries\.approval\]: approval: column needs approved = \[the values",
        ),
        (
            '[time_entries]\nentry_id = "ID"\napproved_at = "X"\n[time_entries.approval]\n'
            'approved_at = "export_time"',
            r"\[time_entries\] maps approved_at and has an approval policy that sets them",
        ),
        (
            '[time_entries]\nentry_id = "ID"\n[time_entries.approval]\napproved_at = "someday"',
            r"\[time_entries\.approval\]: approved_at must be one of 'export_time', 'updated_at'",
        ),
        (
            '[time_entries]\nfiles = 3\nentry_id = "ID"',
            r"\[time_entries\.files\] must be a file-name glob",
        ),
        (
            '[format]\ndelimiter = ";;"\n[time_entries]\nentry_id = "ID"',
            r"\[format\]: delimiter must be one character",
        ),
        (
            '[time_entries]\nentry_id = "ID"\n[[project_defaults]]\nprojects = "*"\n'
            'currency = "euro"',
            r"\[\[project_defaults\]\] #1: currency 'euro' is not an ISO 4217 code",
        ),
        (
            '[time_entries]\nentry_id = "ID"\n[derived.invoices]\ninvoice_id = "X"\nline_no = "L"',
            r"\[derived\.invoices\]: only master data is derived",
        ),
        (
            '[time_entries]\nentry_id = "ID"\nwork_date = { source = "S", transform = '
            '"local_date" }',
            r"\[time_entries\.work_date\]: transform 'local_date' needs timezone",
        ),
        (
            '[time_entries]\nentry_id = "ID"\n_x = { source = "S", transform = "local_date", '
            'timezone = "Mars/Olympus" }',
            r"\[time_entries\._x\]: bad timezone 'Mars/Olympus'",
        ),
    ],
)
def test_invalid_additions_are_refused_naming_file_field_and_expectation(
    toml: str, message: str
) -> None:
    with pytest.raises(MappingError, match=r"mapping vendor\.toml: .*" + message):
        _mapping(toml)
