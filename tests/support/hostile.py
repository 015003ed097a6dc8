"""Builders of hostile export files for tests: bombs, entity tricks, broken CSVs.

Everything is made in the test, small on disk; the bombs inflate to tens of MiB,
streamed into the archive so building them costs little memory either.
"""

from __future__ import annotations

import gzip
import zipfile
from collections.abc import Iterable, Sequence
from itertools import chain, repeat
from pathlib import Path

from openpyxl import Workbook

from connectors.sources.canonical import DATASETS
from tests.support.csvtools import TE_BASE

TE_COLS: list[str] = list(DATASETS["time_entries"].layout)
MIB = 1 << 20
SHEET = "xl/worksheets/sheet1.xml"


def te_values(**overrides: str) -> list[str]:
    return [{**TE_BASE, **overrides}[c] for c in TE_COLS]


def csv_line(values: Sequence[str], delimiter: str = ",") -> str:
    """One CSV record, quoting only what needs it (so a test can also write broken ones)."""

    def q(v: str) -> str:
        if any(ch in v for ch in (delimiter, '"', "\n", "\r")):
            return '"' + v.replace('"', '""') + '"'
        return v

    return delimiter.join(q(v) for v in values)


def csv_text(rows: Iterable[Sequence[str]], *, header: Sequence[str] = TE_COLS, nl="\n") -> str:
    return nl.join([csv_line(header), *(csv_line(r) for r in rows)]) + nl


def write_xlsx(path: Path, rows: Iterable[Sequence[object]], header=TE_COLS) -> Path:
    wb = Workbook()
    ws = wb.active
    ws.append(list(header))
    for r in rows:
        ws.append(list(r))
    wb.save(path)
    return path


def rewrite_member(path: Path, member: str, parts: Iterable[bytes]) -> Path:
    """Replace one part of a zip (an XLSX) with the given byte chunks, streamed in."""
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename == member:
                continue
            dst.writestr(info, src.read(info.filename))
        with dst.open(member, "w", force_zip64=True) as out:
            for chunk in parts:
                out.write(chunk)
    tmp.replace(path)
    return path


def repeated(byte: bytes, total: int, chunk: int = MIB) -> Iterable[bytes]:
    block = byte * chunk
    while total > 0:
        yield block[: min(chunk, total)]
        total -= chunk


def xlsx_with_cell(path: Path, cell: Iterable[bytes], prolog: bytes = b"") -> Path:
    """A real time-entry workbook (openpyxl writes inline strings) whose second row's
    description is replaced by `cell`: the inner XML of `<is>`, streamed in (a `<t>` text or
    `<r><t>` rich-text runs); `prolog` (a DTD, say) goes right after the XML declaration."""
    write_xlsx(path, [te_values(), te_values(entry_id="TE2", description="BOMB")])
    with zipfile.ZipFile(path) as z:
        xml = z.read(SHEET)
    head, tail = xml.split(b"<t>BOMB</t>")
    decl, _, rest = head.rpartition(b"?>")  # openpyxl writes no declaration: then none
    parts = chain([decl + _, prolog, rest], cell, [tail])
    return rewrite_member(path, SHEET, parts)


def text_cell(parts: Iterable[bytes] | bytes) -> Iterable[bytes]:
    yield b"<t>"
    if isinstance(parts, bytes):
        yield parts
    else:
        yield from parts
    yield b"</t>"


def rich_runs(runs: int, run_bytes: int = MIB) -> Iterable[bytes]:
    """Rich-text runs, each under XML parsers' text-node limits (lxml: 10 MB), that a reader
    joins into one cell."""
    return repeat(b"<r><t>" + b"a" * run_bytes + b"</t></r>", runs)


def gzip_of(path: Path, parts: Iterable[bytes]) -> Path:
    with gzip.open(path, "wb", compresslevel=6) as f:
        for chunk in parts:
            f.write(chunk)
    return path
