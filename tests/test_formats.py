"""PSA files as they really arrive: encodings, delimiters, decimal commas, multi-line fields,
gzip, XLSX serial dates, sheets and header rows, and files larger than memory should allow."""

from __future__ import annotations

import csv
import gzip
import io
import time
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from openpyxl import Workbook
from openpyxl.utils.datetime import CALENDAR_MAC_1904

from connectors.sources.canonical import DATASETS, TIME_ENTRIES
from connectors.sources.formats import FileFormat, FileFormatError, FileLimits, open_raw
from staging_models.db import StagingDB
from staging_models.landing import LandingError, land_file, typed_select_sql
from tests.support.csvtools import te, write_csv
from tests.support.memtools import peak_memory

NAMES = ("Zoë Müller-Lüdenscheidt", "François Ñúñez", "Łukasz Dvořák")  # the last is not cp1252
ROWS = [
    te(entry_id="A", employee_name=NAMES[0], description="Café crème, € 12"),
    te(entry_id="B", employee_name=NAMES[1], hours="0.25", bill_rate="1234.50", description="Ü"),
]


def staged(db: StagingDB, cols: str = "entry_id, employee_name, hours, bill_rate, description"):
    return db.query_df(f"SELECT row_no, {cols} FROM land_time_entries ORDER BY row_no")


def assert_rows_staged(db: StagingDB) -> None:
    df = staged(db)
    assert df["row_no"].tolist() == [2, 3]
    assert df["employee_name"].tolist() == [NAMES[0], NAMES[1]]
    assert df["description"].tolist() == ["Café crème, € 12", "Ü"]
    assert df["hours"].tolist() == [Decimal("7.50"), Decimal("0.25")]
    assert df["bill_rate"].tolist() == [Decimal("150.00"), Decimal("1234.50")]


@pytest.mark.parametrize(
    ("written", "declared"),
    [("utf-8", "utf-8"), ("utf-8-sig", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("cp1252", "cp1252")],
)
def test_encodings_stage_the_same_text(
    duck_db: StagingDB, tmp_path: Path, written: str, declared: str
) -> None:
    f = write_csv(tmp_path / "time_entries_1.csv", "time_entries", ROWS, encoding=written)
    assert f.read_bytes().startswith(b"\xef\xbb\xbf") == (written == "utf-8-sig")
    land_file(duck_db, f, "time_entries", fmt=FileFormat(encoding=declared))
    assert_rows_staged(duck_db)
    assert not list((tmp_path / ".stagepost-work").rglob("*.csv")), "transcoded copy left behind"


def test_wrong_or_broken_encoding_is_refused_not_garbled(duck_db: StagingDB, tmp_path: Path):
    cp = write_csv(tmp_path / "time_entries_1.csv", "time_entries", ROWS, encoding="cp1252")
    with pytest.raises(LandingError, match="time_entries_1.csv"):
        land_file(duck_db, cp, "time_entries")  # cp1252 bytes read as the UTF-8 default
    broken = tmp_path / "time_entries_2.csv"
    broken.write_bytes(cp.read_bytes() + b"C,\x81\n")  # 0x81 is unassigned in cp1252
    with pytest.raises(LandingError, match=rf"time_entries_2.csv: byte {cp.stat().st_size + 2} "):
        land_file(duck_db, broken, "time_entries", fmt=FileFormat(encoding="cp1252"))
    assert duck_db.scalar("SELECT COUNT(*) FROM land_time_entries") == 0
    with pytest.raises(UnicodeEncodeError):  # the test's own premise: not every name fits cp1252
        NAMES[2].encode("cp1252")


def test_semicolons_and_decimal_commas(duck_db: StagingDB, tmp_path: Path) -> None:
    rows = [
        te(entry_id="A", hours="7,5", bill_rate="1.234,50"),
        te(entry_id="B", hours="0,25", bill_rate="1\u00a0234,5"),  # no-break space groups
        te(entry_id="C", hours="8", bill_rate="99"),
        te(entry_id="D", hours="7.5", bill_rate="12,345"),  # a dot decimal stays; 12,345 = 12.345
    ]
    f = write_csv(tmp_path / "time_entries_1.csv", "time_entries", rows, delimiter=";")
    land_file(duck_db, f, "time_entries", fmt=FileFormat(delimiter=";", decimal_comma=True))
    df = staged(duck_db, "entry_id, hours, bill_rate, type_errors")
    assert df["hours"].tolist() == [Decimal(x) for x in ("7.5", "0.25", "8", "7.5")]
    assert df["bill_rate"].tolist() == [Decimal(x) for x in ("1234.50", "1234.5", "99", "12.345")]
    assert df["type_errors"].isna().all()


def test_tab_separated_and_quoted_fields_with_newlines(duck_db: StagingDB, tmp_path: Path):
    notes = 'Workshop:\n- agenda, "scope"\r\n- next steps'
    rows = [te(entry_id="A", description=notes), te(entry_id="B", description="plain")]
    f = write_csv(tmp_path / "time_entries_1.csv", "time_entries", rows, delimiter="\t")
    assert f.read_text(encoding="utf-8").count("\n") == 5  # 3 records span 5 lines
    land_file(duck_db, f, "time_entries", fmt=FileFormat(delimiter="\t"))
    df = staged(duck_db, "entry_id, description")
    # One record is one row, as Excel shows it: B is row 3 although it starts on line 5.
    assert df["row_no"].tolist() == [2, 3]
    assert df["description"].tolist() == [notes, "plain"]


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252"])
def test_gzip_compressed_csv(duck_db: StagingDB, tmp_path: Path, encoding: str) -> None:
    plain = write_csv(tmp_path / "plain.csv", "time_entries", ROWS, encoding=encoding)
    gz = tmp_path / "time_entries_1.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    r = land_file(duck_db, gz, "time_entries", fmt=FileFormat(encoding=encoding))
    assert r.rows_read == 2
    assert_rows_staged(duck_db)


def _serial(d: date, epoch: date = date(1899, 12, 30)) -> int:
    return (d - epoch).days


def _workbook(rows: list[list[object]], *, header_row: int, epoch=None) -> Workbook:
    """A workbook whose second sheet, "Export", has a title block above the header."""
    wb = Workbook()
    if epoch is not None:
        wb.epoch = epoch
    wb.active.title = "Summary"
    wb.active.append(["Totals only"])
    ws = wb.create_sheet("Export")
    ws.append(["Detailed time, November 2026"])
    for _ in range(header_row - 2):
        ws.append([])
    ws.append(list(TIME_ENTRIES.layout))
    for r in rows:
        ws.append(r)
    return wb


def _xlsx_row(**values: object) -> list[object]:
    base: dict[str, object] = {**te(), **values}
    return [base.get(c) for c in TIME_ENTRIES.layout]


def test_xlsx_serial_dates_sheet_and_header_row(duck_db: StagingDB, tmp_path: Path) -> None:
    rows = [
        _xlsx_row(entry_id="A", work_date=_serial(date(2026, 11, 2)), hours=7.5),  # int serial
        _xlsx_row(entry_id="B", work_date=_serial(date(2026, 11, 3)) + 0.75, hours=0.1),  # 18:00
        _xlsx_row(entry_id="C", work_date=datetime(2026, 11, 4, 9, 30), hours=8),  # a real date
        _xlsx_row(entry_id="D", work_date="2026-11-05", hours="6.25"),  # typed as text
        _xlsx_row(entry_id="E", work_date=10_000_000, hours=1),  # beyond Excel's calendar
    ]
    path = tmp_path / "time_entries_1.xlsx"
    _workbook(rows, header_row=3).save(path)
    fmt = FileFormat(sheet="Export", header_row=3)
    land_file(duck_db, path, "time_entries", fmt=fmt)
    df = staged(duck_db, "entry_id, work_date, raw_work_date, hours, type_errors")
    assert df["row_no"].tolist() == [4, 5, 6, 7, 8]  # the sheet's own row numbers
    assert [str(d) for d in df["work_date"][:4]] == [
        "2026-11-02",
        "2026-11-03",
        "2026-11-04",
        "2026-11-05",
    ]
    assert df["hours"][:4].tolist() == [Decimal(x) for x in ("7.5", "0.1", "8", "6.25")]
    assert (df["raw_work_date"][4], df["type_errors"][4]) == ("10000000", "work_date")

    with pytest.raises(FileFormatError, match=r"no sheet named 'Time' \(sheets: Summary, Export\)"):
        open_raw(duckdb.connect(), path, TIME_ENTRIES, FileFormat(sheet="Time"), workdir=tmp_path)


def test_xlsx_from_a_1904_workbook(duck_db: StagingDB, tmp_path: Path) -> None:
    day = date(2026, 11, 2)
    wb = _workbook(
        [_xlsx_row(entry_id="A", work_date=_serial(day, date(1904, 1, 1)))],
        header_row=2,
        epoch=CALENDAR_MAC_1904,
    )
    wb.save(tmp_path / "time_entries_1.xlsx")
    land_file(
        duck_db,
        tmp_path / "time_entries_1.xlsx",
        "time_entries",
        fmt=FileFormat(sheet="Export", header_row=2),
    )
    assert str(duck_db.scalar("SELECT work_date FROM land_time_entries")) == "2026-11-02"


def _big_export(path: Path, target_bytes: int, encoding: str) -> int:
    """A time-entries export of about `target_bytes` (uncompressed) with accented names, euro
    signs and multi-line quoted notes; returns its record count. Writes a block repeatedly."""
    cols = DATASETS["time_entries"].layout
    buf = io.StringIO()
    w = csv.writer(buf)
    for i in range(5000):
        r = te(entry_id=f"TE{i}", employee_name=NAMES[i % 2], description=f"Réunion €{i}\n2nd line")
        w.writerow([r[c] for c in cols])
    block = buf.getvalue().encode(encoding)
    blocks = -(-target_bytes // len(block))
    opener = gzip.open(path, "wb", compresslevel=1) if path.suffix == ".gz" else open(path, "wb")
    with opener as f:
        f.write((",".join(cols) + "\r\n").encode(encoding))
        for _ in range(blocks):
            f.write(block)
    return blocks * 5000


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "encoding", "typed"),
    [("time_entries_big.csv", "utf-8", False), ("time_entries_big.csv.gz", "cp1252", False)],
)
def test_large_file_streams_with_bounded_memory(
    tmp_path: Path, name: str, encoding: str, typed: bool
) -> None:
    """256 MiB through `open_raw` (and, for the plain file, the landing SELECT with its typing
    and hashing): Python never holds more than a transcoding chunk, and DuckDB scans within a
    memory limit far below the file size. The gzip file is cp1252: decompressed, transcoded
    and scanned as streams."""
    size = 288 << 20
    path = tmp_path / name
    records = _big_export(path, size, encoding)
    con = duckdb.connect()
    # What a deployment can set for the staging DuckDB: the scan must fit in far less than
    # the file. One thread: DuckDB holds one ~30 MiB CSV buffer per thread.
    con.execute("SET memory_limit = '100MB'")
    con.execute("SET threads = 1")
    started = time.monotonic()
    with peak_memory() as peak:
        view = open_raw(
            con,
            path,
            TIME_ENTRIES,
            # Over the default row limit on purpose: this measures streaming, not the limit.
            FileFormat(encoding=encoding, limits=FileLimits(max_rows=records)),
            workdir=tmp_path / "work",
        )
        if typed:
            _, select = typed_select_sql(TIME_ENTRIES, view, "L1")
            sql = f"SELECT count(*), max(row_no), count(type_errors), sum(length(description)) FROM ({select})"
        else:
            sql = f"SELECT count(*), max(_row_no), 0, sum(length(description)) FROM {view}"
        got = con.execute(sql).fetchone()
    elapsed = time.monotonic() - started
    con.close()
    print(
        f"{name}: {size >> 20} MiB ({encoding}) in {elapsed:.1f}s, peak RSS "
        f"+{peak.rss_growth >> 20} MiB, Python heap peak {peak.python_peak >> 10} KiB"
    )
    assert got[:3] == (records, records + 1, 0)
    assert got[3] == sum(len(f"Réunion €{i}\n2nd line") for i in range(5000)) * (records // 5000)
    assert peak.python_peak < 16 << 20, "rows passed through Python"
    assert peak.rss_growth < size // 2, f"peak RSS grew {peak.rss_growth >> 20} MiB"


def _malformed(kind: str) -> bytes:
    """A 5000-record export broken at record 4000 (line 4001), so DuckDB's sniffer passes and
    its reader fails deep in the file, where its line numbers were misleading."""
    header = ",".join(TIME_ENTRIES.layout)
    good = [",".join(te(entry_id=f"TE{i}").values()) for i in range(5000)]
    bad = good[3999]
    good[3999] = {
        "unterminated_quote": bad.replace("Design review", '"Design review'),
        "column_count": bad + ",surplus",
        "nul_byte": bad.replace("Design", "Des\0ign"),
        "encoding": bad.replace("Design", "D\xe9sign"),
    }[kind]
    return ("\n".join([header, *good]) + "\n").encode("latin-1")


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("unterminated_quote", "line 4001: a quoted value is never closed (unterminated quote)"),
        (
            "column_count",
            "line 4001 has 17 values where the header has 16 (inconsistent column count)",
        ),
        ("nul_byte", "line 4001 holds a NUL byte, which text never does"),
        ("encoding", "line 4001 is not valid UTF-8 (byte "),
    ],
)
def test_malformed_csv_is_explained_by_line_and_cause(
    tmp_path: Path, kind: str, message: str
) -> None:
    """Issue 20.4: DuckDB's sniffing message, full path and options become the file, the line
    as the file counts it, and the cause."""
    path = tmp_path / "time_entries_bad.csv"
    path.write_bytes(_malformed(kind))
    with pytest.raises(FileFormatError) as e:
        open_raw(duckdb.connect(), path, TIME_ENTRIES, workdir=tmp_path / "w")
    got = str(e.value)
    assert got.startswith(f"time_entries_bad.csv: {message}"), got
    for internal in (str(tmp_path), "read_csv", "sniff", "strict_mode", "SELECT", "\n"):
        assert internal not in got, internal


def test_unknown_encoding_is_named(tmp_path: Path) -> None:
    f = write_csv(tmp_path / "time_entries_1.csv", "time_entries", ROWS)
    with pytest.raises(FileFormatError, match="unknown encoding 'klingon'"):
        open_raw(
            duckdb.connect(), f, TIME_ENTRIES, FileFormat(encoding="klingon"), workdir=tmp_path
        )


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_column_given_twice_is_refused(tmp_path: Path, suffix: str) -> None:
    """DuckDB and the XLSX reader rename a repeated header (`hours_1`, `hours (2)`); the
    check uses the header as written, so the file is refused instead of one copy winning."""
    cols = [*TIME_ENTRIES.layout, "Hours"]
    row = [*te().values(), "9.00"]
    path = tmp_path / f"time_entries_1{suffix}"
    if suffix == ".csv":
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([cols, row])
    else:
        wb = Workbook()
        wb.active.append(cols)
        wb.active.append(row)
        wb.save(path)
    with pytest.raises(FileFormatError, match="column 'hours' appears twice in the header"):
        open_raw(duckdb.connect(), path, TIME_ENTRIES, FileFormat(), workdir=tmp_path)
