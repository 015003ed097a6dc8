"""The catalogue of hostile and broken export files (issue 20), one case each.

Every case lands one file into a staging database that already holds the master data,
then asserts what must happen:
- a refused file: the exact message (file, line, cause, or the limit and its setting),
  a `refused` load, zero rows landed from it, nothing else changed, the file still there;
- a read file: the rows read, and for named rows the exact quarantine rule codes (or
  `valid`); after validation nothing is pending and conservation holds (rows read =
  rows landed; every version in exactly one state).
"""

from __future__ import annotations

import codecs
import gzip
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.sources.formats import FileFormat, FileLimits
from staging_models.db import StagingDB
from staging_models.landing import LandingError, land_file
from staging_models.validation import conservation
from tests.support.hostile import (
    MIB,
    TE_COLS,
    csv_line,
    gzip_of,
    repeated,
    rewrite_member,
    rich_runs,
    te_values,
    text_cell,
    write_xlsx,
    xlsx_with_cell,
)
from tests.support.staging_helpers import World

HEADER = csv_line(TE_COLS)
BOMB = 32 * MIB
NUL_HINT = (
    "which text never does (a binary file, or UTF-16 text: then set STAGEPOST_ENCODING=utf-16)"
)
RATIO = "(STAGEPOST_MAX_COMPRESSION_RATIO=100); a compression bomb?"
DTD = "which a spreadsheet never needs (entity expansion or external entity attack)"


def row(**kw: str) -> str:
    return csv_line(te_values(**kw))


def text(*lines: str, nl: str = "\n") -> bytes:
    return (nl.join([HEADER, *lines]) + nl).encode()


def raw(data: bytes) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(data)


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path], object]
    name: str = "time_entries_x.csv"
    refused: str | None = None  # the exact message; None: the file is read
    rows: int = 0  # records read, when the file is read
    codes: dict[str, set[str]] = field(default_factory=dict)  # key -> exact rule codes
    valid: tuple[str, ...] = ()
    fmt: FileFormat = FileFormat()
    descriptions: dict[str, str] = field(default_factory=dict)  # key -> text stored verbatim


def _xlsx(rows: list[list[object]]) -> Callable[[Path], object]:
    return lambda p: write_xlsx(p, rows)


def _xlsx_with(member: str, body: bytes) -> Callable[[Path], object]:
    return lambda p: rewrite_member(write_xlsx(p, [te_values()]), member, [body])


def _billion_laughs() -> bytes:
    ents = [b'<!ENTITY l0 "lol">'] + [
        b'<!ENTITY l%d "%s">' % (i, b"".join(b"&l%d;" % (i - 1) for _ in range(10)))
        for i in range(1, 10)
    ]
    return b"<!DOCTYPE worksheet [" + b"".join(ents) + b"]>"


def _cp1252_offset() -> int:
    data = text(row(), row(entry_id="TE2", description="Café"))
    return data.index(b"Caf") + 3 + 1


XXE = (
    b'<?xml version="1.0"?><!DOCTYPE w [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<worksheet><sheetData><row><c t="inlineStr"><is><t>&x;</t></is></c></row></sheetData></worksheet>'
)

CASES: list[Case] = [
    # -- encodings and byte-order marks --------------------------------------------------
    Case("utf8_bom", raw(codecs.BOM_UTF8 + text(row())), rows=1, valid=("TE1",)),
    Case(
        "utf16_read_as_utf8",
        raw(text(row()).decode().encode("utf-16")),
        refused=f"time_entries_x.csv: line 1 holds a NUL byte, {NUL_HINT}",
    ),
    Case(
        "utf16_declared",
        raw(text(row()).decode().encode("utf-16")),
        rows=1,
        valid=("TE1",),
        fmt=FileFormat(encoding="utf-16"),
    ),
    Case(
        "cp1252_read_as_utf8",
        raw(text(row(), row(entry_id="TE2", description="Café")).decode().encode("cp1252")),
        refused=(
            f"time_entries_x.csv: line 3 is not valid UTF-8 (byte {_cp1252_offset()}); if the "
            "PSA writes another encoding, set STAGEPOST_ENCODING (e.g. cp1252)"
        ),
    ),
    Case(
        "cp1252_declared",
        raw(text(row(description="Café €5")).decode().encode("cp1252")),
        rows=1,
        valid=("TE1",),
        fmt=FileFormat(encoding="cp1252"),
    ),
    Case(
        "utf8_read_as_ascii",
        raw(text(row(description="Jörg"))),
        refused=f"time_entries_x.csv: byte {text(row(description='Jörg')).index(b'J') + 1} "
        "is not valid ascii",
        fmt=FileFormat(encoding="ascii"),
    ),
    Case(
        "bom_only",
        raw(codecs.BOM_UTF8),
        refused="time_entries_x.csv: the file is empty (not even a header row)",
    ),
    Case(
        "double_bom",
        raw(codecs.BOM_UTF8 * 2 + text(row())),
        rows=1,
        valid=("TE1",),  # a stray BOM in a header name is ignored like other blanks
    ),
    # -- NUL bytes and binary --------------------------------------------------------------
    Case(
        "nul_in_value",
        raw(text(row(), row(entry_id="TE2", description="a\0b"))),
        refused=f"time_entries_x.csv: line 3 holds a NUL byte, {NUL_HINT}",
    ),
    Case(
        "nul_in_header",
        raw(b"entry_id\0," + text(row())[9:]),
        refused=f"time_entries_x.csv: line 1 holds a NUL byte, {NUL_HINT}",
    ),
    Case(
        "binary_garbage",
        raw(bytes(range(1, 256)) * 4),
        refused=(
            "time_entries_x.csv: line 2 is not valid UTF-8 (byte 128); if the PSA writes "
            "another encoding, set STAGEPOST_ENCODING (e.g. cp1252)"
        ),
    ),
    # -- quotes ------------------------------------------------------------------------------
    Case(
        "unterminated_quote_mid_file",
        raw(text(row(), '"' + row(entry_id="TE2"), row(entry_id="TE3"))),
        refused="time_entries_x.csv: line 3: a quoted value is never closed (unterminated quote)",
    ),
    Case(
        "unterminated_quote_last_line",
        raw(text(row(), row(entry_id="TE2")[:-5] + '"oops')),
        refused="time_entries_x.csv: line 3: a quoted value is never closed (unterminated quote)",
    ),
    Case(
        "quoted_line_break_is_one_record",
        raw(text(row(description="line one\nline two"), row(entry_id="TE2"))),
        rows=2,
        valid=("TE1", "TE2"),
    ),
    Case(
        "quote_inside_unquoted_value_is_text",
        raw(text(row(), row(entry_id="TE2").replace("Design review", 'Design "review"'))),
        rows=2,
        valid=("TE1", "TE2"),
        descriptions={"TE2": 'Design "review"'},
    ),
    # -- ragged rows --------------------------------------------------------------------------
    Case(
        "extra_value",
        raw(text(row(), row(entry_id="TE2") + ",surplus", row(entry_id="TE3"))),
        refused=(
            "time_entries_x.csv: line 3 has 17 values where the header has 16 "
            "(inconsistent column count)"
        ),
    ),
    Case(
        "missing_values",
        raw(text(row(), row(), ",".join(te_values(entry_id="TE3")[:12]))),
        refused=(
            "time_entries_x.csv: line 4 has 12 values where the header has 16 "
            "(inconsistent column count)"
        ),
    ),
    Case(
        "ragged_after_a_multi_line_record",
        raw(text(row(description="a\nb\nc"), row(entry_id="TE2") + ",x")),
        refused=(
            "time_entries_x.csv: line 5 has 17 values where the header has 16 "
            "(inconsistent column count)"
        ),
    ),
    # -- huge cells and bombs ---------------------------------------------------------------
    Case(
        "huge_csv_cell",
        raw(text(row(), row(entry_id="TE2", description="z" * 100_000))),
        refused=(
            "time_entries_x.csv: refused: line 3 holds a value longer than 65,536 bytes "
            "(STAGEPOST_MAX_CELL_BYTES=65536)"
        ),
    ),
    Case(
        "huge_xlsx_cell",
        lambda p: xlsx_with_cell(p, text_cell(b"z" * 100_000)),
        name="time_entries_x.xlsx",
        refused=(
            "time_entries_x.xlsx: refused: xl/worksheets/sheet1.xml holds a value longer than "
            "65,536 bytes (STAGEPOST_MAX_CELL_BYTES=65536)"
        ),
    ),
    Case(
        "huge_xlsx_cell_in_rich_text_runs",
        lambda p: xlsx_with_cell(p, rich_runs(3, 40_000)),
        name="time_entries_x.xlsx",
        refused=(
            "time_entries_x.xlsx: refused: row 3 holds a value longer than 65,536 bytes "
            "(STAGEPOST_MAX_CELL_BYTES=65536)"
        ),
    ),
    Case(
        "xlsx_cell_bomb",
        lambda p: xlsx_with_cell(p, rich_runs(BOMB // MIB)),
        name="time_entries_x.xlsx",
        refused=f"time_entries_x.xlsx: refused: xl/worksheets/sheet1.xml inflates more than 100 times its compressed size {RATIO}",
    ),
    Case(
        "xlsx_unreferenced_part_bomb",
        lambda p: rewrite_member(
            write_xlsx(p, [te_values()]), "xl/media/blob.bin", repeated(b"\0", BOMB)
        ),
        name="time_entries_x.xlsx",
        refused=f"time_entries_x.xlsx: refused: xl/media/blob.bin inflates more than 100 times its compressed size {RATIO}",
    ),
    Case(
        "xlsx_sheet_bomb",
        lambda p: rewrite_member(
            write_xlsx(p, [te_values()]),
            "xl/worksheets/sheet1.xml",
            [b"<worksheet><sheetData>", *repeated(b" ", BOMB), b"</sheetData></worksheet>"],
        ),
        name="time_entries_x.xlsx",
        refused=f"time_entries_x.xlsx: refused: xl/worksheets/sheet1.xml inflates more than 100 times its compressed size {RATIO}",
    ),
    Case(
        "gzip_bomb",
        lambda p: gzip_of(p, [HEADER.encode() + b"\n", *repeated(b"\n", BOMB)]),
        name="time_entries_x.csv.gz",
        refused=f"time_entries_x.csv.gz: refused: the gzip stream inflates more than 100 times its compressed size {RATIO}",
    ),
    Case(
        "gzip_over_the_inflated_limit",
        lambda p: gzip_of(p, [text(*(row(entry_id=f"TE{i}") for i in range(1000)))]),
        name="time_entries_x.csv.gz",
        refused=(
            "time_entries_x.csv.gz: refused: the gzip stream inflates to more than 65,536 bytes "
            "(STAGEPOST_MAX_UNCOMPRESSED_BYTES=65536)"
        ),
        fmt=FileFormat(limits=FileLimits(max_uncompressed_bytes=65_536)),
    ),
    Case(
        "gzip_truncated",
        lambda p: p.write_bytes(gzip.compress(text(row(), row(entry_id="TE2")))[:-12]),
        name="time_entries_x.csv.gz",
        refused=(
            "time_entries_x.csv.gz: not a readable gzip file (Compressed file ended before the "
            "end-of-stream marker was reached)"
        ),
    ),
    Case(
        "xlsx_that_is_not_a_zip",
        raw(text(row())),
        name="time_entries_x.xlsx",
        refused="time_entries_x.xlsx: not a readable XLSX workbook (File is not a zip file)",
    ),
    Case(
        "too_many_rows_xlsx",
        _xlsx([te_values(entry_id=f"TE{i}") for i in range(11)]),
        name="time_entries_x.xlsx",
        refused=(
            "time_entries_x.xlsx: refused: more than 10 rows (STAGEPOST_MAX_FILE_ROWS=10); "
            "split the export or raise the limit"
        ),
        fmt=FileFormat(limits=FileLimits(max_rows=10)),
    ),
    Case(
        "too_many_rows_parquet",
        lambda p: pq.write_table(
            pa.table(
                {
                    c: [te_values(entry_id=f"TE{i}")[j] for i in range(11)]
                    for j, c in enumerate(TE_COLS)
                }
            ),
            p,
        ),
        name="time_entries_x.parquet",
        refused=(
            "time_entries_x.parquet: refused: more than 10 rows (STAGEPOST_MAX_FILE_ROWS=10); "
            "split the export or raise the limit"
        ),
        fmt=FileFormat(limits=FileLimits(max_rows=10)),
    ),
    # -- XML entity tricks in XLSX ------------------------------------------------------------
    Case(
        "xlsx_billion_laughs",
        lambda p: xlsx_with_cell(p, text_cell(b"&l9;"), prolog=_billion_laughs()),
        name="time_entries_x.xlsx",
        refused=f"time_entries_x.xlsx: refused: xl/worksheets/sheet1.xml declares a DTD or XML entities, {DTD}",
    ),
    Case(
        "xlsx_external_entity",
        _xlsx_with("xl/worksheets/sheet1.xml", XXE),
        name="time_entries_x.xlsx",
        refused=f"time_entries_x.xlsx: refused: xl/worksheets/sheet1.xml declares a DTD or XML entities, {DTD}",
    ),
    # -- formula-looking text, formulas, absurd numbers ------------------------------------
    Case(
        "formula_looking_text_stays_text",
        raw(
            text(
                row(description='=HYPERLINK("http://x","y")'),
                row(entry_id="TE2", description="+cmd|' /C calc'!A0", hours="1"),
                row(entry_id="TE3", description="@SUM(1+1)", hours="1"),
                row(entry_id="TE4", description="-2+3", hours="1"),
            )
        ),
        rows=4,
        valid=("TE1", "TE2", "TE3", "TE4"),
        descriptions={
            "TE1": '=HYPERLINK("http://x","y")',
            "TE2": "+cmd|' /C calc'!A0",
            "TE3": "@SUM(1+1)",
            "TE4": "-2+3",
        },
    ),
    Case(
        "xlsx_formula_without_cached_value",
        _xlsx([te_values(), [*te_values(entry_id="TE2")[:6], "=24*365", *te_values()[7:]]]),
        name="time_entries_x.xlsx",
        rows=2,
        valid=("TE1",),
        codes={"TE2": {"TE_HOURS_MISSING"}},
    ),
    Case(
        "absurd_numbers",
        raw(
            text(
                row(entry_id="A", hours="1e308"),
                row(entry_id="B", hours="NaN"),
                row(entry_id="C", hours="99999999999999999999999.5"),
                row(entry_id="D", bill_rate="Infinity"),
                row(entry_id="E", hours="7.123456"),
                row(entry_id="OK"),
            )
        ),
        rows=6,
        codes={
            "A": {"TE_HOURS_FORMAT"},
            "B": {"TE_HOURS_FORMAT"},
            "C": {"TE_HOURS_FORMAT"},
            "D": {"TE_BILL_RATE_FORMAT"},
            "E": {"TE_HOURS_FORMAT"},
        },
        valid=("OK",),
    ),
    Case(
        "negative_and_absurd_hours",
        raw(
            text(
                row(entry_id="NEG", hours="-7.5"),
                row(entry_id="ZERO", hours="0"),
                row(entry_id="HUGE", hours="25"),  # not counted in the day's total
                row(entry_id="OK"),
            )
        ),
        rows=4,
        codes={
            "NEG": {"TE_HOURS_NOT_POSITIVE"},
            "ZERO": {"TE_HOURS_NOT_POSITIVE"},
            "HUGE": {"TE_HOURS_OVER_24"},
        },
        valid=("OK",),
    ),
    # -- empty files, header only, headers --------------------------------------------------
    Case(
        "empty_file",
        raw(b""),
        refused="time_entries_x.csv: the file is empty (not even a header row)",
    ),
    Case("header_only", raw(text()), rows=0),
    Case("header_only_xlsx", _xlsx([]), name="time_entries_x.xlsx", rows=0),
    Case(
        "empty_xlsx",
        lambda p: write_xlsx(p, [], header=[]),
        name="time_entries_x.xlsx",
        refused="time_entries_x.xlsx: no header at row 1 of sheet 'Sheet'",
    ),
    Case(
        "duplicate_header",
        raw((HEADER + ",Hours\n" + row() + ",8\n").encode()),
        refused="time_entries_x.csv: column 'hours' appears twice in the header",
    ),
    Case(
        "missing_required_column",
        raw(
            (
                "\n".join(
                    csv_line([v for c, v in zip(TE_COLS, r, strict=True) if c != "hours"])
                    for r in [TE_COLS, te_values()]
                )
                + "\n"
            ).encode()
        ),
        refused="time_entries_x.csv: missing column(s) hours for dataset time_entries",
    ),
    Case(
        "wrong_delimiter",
        raw(text(row()).replace(b",", b";")),
        refused=(
            "time_entries_x.csv: missing column(s) entry_id, employee_id, employee_name, "
            "project_code, task_code, work_date, hours, billable, bill_rate, currency, "
            "approval_status, approved_at, approved_by, description, updated_at for dataset "
            "time_entries"
        ),
    ),
    # -- keys and duplicates ----------------------------------------------------------------
    Case(
        "duplicate_id_different_content",
        raw(text(row(entry_id="DUP"), row(entry_id="DUP", hours="3.00"), row(entry_id="OK"))),
        rows=3,
        codes={"DUP": {"TE_DUPLICATE_CONFLICT"}},
        valid=("OK",),
    ),
    Case(
        "duplicate_id_same_content",
        raw(text(row(entry_id="TWICE"), row(entry_id="TWICE"))),
        rows=2,
        valid=("TWICE",),
    ),
    Case(
        "blank_and_whitespace_values",
        raw(text(row(entry_id="W", hours="   ", project_code=""), row(entry_id="OK"))),
        rows=2,
        codes={"W": {"TE_HOURS_MISSING", "TE_PROJECT_CODE_MISSING"}},
        valid=("OK",),
    ),
    # -- dates ---------------------------------------------------------------------------------
    Case(
        "dates_out_of_range",
        raw(
            text(
                row(entry_id="FEB30", work_date="2026-02-30"),
                row(entry_id="Y10K", work_date="10000-01-01"),
                row(entry_id="FAR", work_date="9999-12-31", approved_at="9999-12-31T12:00:00Z"),
                row(entry_id="OK"),
            )
        ),
        rows=4,
        codes={
            "FEB30": {"TE_WORK_DATE_FORMAT"},
            "Y10K": {"TE_WORK_DATE_FORMAT"},
            "FAR": {"TE_FUTURE_DATE", "TE_OUTSIDE_PROJECT_DATES"},
        },
        valid=("OK",),
    ),
    Case(
        "xlsx_absurd_serial_date",
        _xlsx([te_values(), [*te_values(entry_id="TE2")[:5], 10**12, *te_values()[6:]]]),
        name="time_entries_x.xlsx",
        rows=2,
        valid=("TE1",),
        codes={"TE2": {"TE_WORK_DATE_FORMAT"}},
    ),
    # -- line endings -------------------------------------------------------------------------
    Case(
        "crlf_throughout",
        raw(text(row(), row(entry_id="TE2"), nl="\r\n")),
        rows=2,
        valid=("TE1", "TE2"),
    ),
    Case(
        "mixed_line_endings",
        raw((HEADER + "\r\n" + row() + "\r\n" + row(entry_id="TE2") + "\n").encode()),
        refused=(
            "time_entries_x.csv: line 3 ends with LF while line 1 ends with CRLF (mixed line "
            "endings); re-export the file with one kind of line ending"
        ),
    ),
    Case(
        "crlf_records_with_lf_inside_quotes",
        raw(text(row(description="one\ntwo"), row(entry_id="TE2"), nl="\r\n")),
        rows=2,
        valid=("TE1", "TE2"),
    ),
    Case(
        "blank_lines_between_records",
        raw(text(row(), "", row(entry_id="TE2"))),
        rows=2,
        valid=("TE1", "TE2"),
    ),
]


def _state(db: StagingDB) -> tuple[int, int, int]:
    return (
        db.scalar("SELECT COUNT(*) FROM land_time_entries"),
        db.scalar("SELECT COUNT(*) FROM stg_time_entries"),
        db.scalar("SELECT COUNT(*) FROM loads WHERE status = 'landed'"),
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_file(duck_db: StagingDB, tmp_path: Path, case: Case) -> None:
    world = World(duck_db, tmp_path / "master").master()
    path = tmp_path / case.name
    case.build(path)
    before = _state(duck_db)
    if case.refused is not None:
        with pytest.raises(LandingError) as e:
            land_file(duck_db, path, "time_entries", fmt=case.fmt)
        assert str(e.value) == case.refused
        assert str(tmp_path) not in str(e.value) and "read_csv" not in str(e.value)
        assert _state(duck_db) == before, "a refused file landed something"
        load = duck_db.query_df(
            "SELECT status, message FROM loads WHERE file_name = :f", {"f": case.name}
        )
        assert load.to_dict("records") == [{"status": "refused", "message": case.refused}]
        assert path.exists(), "a refused file must not be lost"
        return
    result = land_file(duck_db, path, "time_entries", fmt=case.fmt)
    assert result.status == "landed"
    assert result.rows_read == case.rows
    landed = duck_db.scalar(
        "SELECT COUNT(*) FROM land_time_entries WHERE load_id = :l", {"l": result.load_id}
    )
    assert landed == case.rows  # rows read = rows landed: nothing half-landed, nothing dropped
    world.validate()
    for key, codes in case.codes.items():
        assert world.codes(key) == codes, key
        assert world.state(key) == "quarantined"
    for key in case.valid:
        assert world.state(key) == "valid", (key, world.codes(key))
    for key, description in case.descriptions.items():
        got = duck_db.scalar(
            "SELECT description FROM stg_time_entries WHERE row_key = :k", {"k": key}
        )
        assert got == description
    assert duck_db.scalar("SELECT COUNT(*) FROM stg_time_entries WHERE state = 'pending'") == 0
    cons = conservation(duck_db)
    assert cons["ok"].all(), cons.to_dict("records")


def test_the_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


def test_zip_members_of_the_bombs_are_small_on_disk(tmp_path: Path) -> None:
    """The bombs are what the issue describes: small files that inflate hugely."""
    for case in CASES:
        if case.id.endswith("_bomb"):
            path = tmp_path / case.name
            case.build(path)
            assert path.stat().st_size < MIB, case.id
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as z:
                    assert sum(i.file_size for i in z.infolist()) > BOMB
