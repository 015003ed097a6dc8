"""Builders of hostile export files for tests: bombs, entity tricks, broken CSVs.

Everything is made in the test, small on disk; the bombs inflate to tens of MiB,
streamed into the archive so building them costs little memory either.
"""

from __future__ import annotations

import gzip
import zipfile
from collections.abc import Iterable, Sequence
from itertools import chain
from pathlib import Path

from openpyxl import Workbook

from connectors.sources.canonical import DATASETS
from tests.csvtools import TE_BASE

TE_COLS: list[str] = list(DATASETS["time_entries"].column_names)
MIB = 1 << 20


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


def shared_strings(*strings: Iterable[bytes] | bytes) -> Iterable[bytes]:
    """A sharedStrings.xml whose strings are given as bytes or as streams of byte chunks."""
    ns = b"http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    yield b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    yield b'<sst xmlns="' + ns + b'" count="%d" uniqueCount="%d">' % (len(strings), len(strings))
    for s in strings:
        yield b"<si><t>"
        if isinstance(s, bytes):
            yield s
        else:
            yield from s
        yield b"</t></si>"
    yield b"</sst>"


def xlsx_with_strings(
    path: Path, strings: list[Iterable[bytes] | bytes], prolog: bytes = b""
) -> Path:
    """An XLSX whose header row holds shared strings 0..n-1 in columns A.., and whose
    sharedStrings.xml is rewritten to `strings` (optionally after a DTD `prolog`)."""
    write_xlsx(path, [], header=[f"s{i}" for i in range(len(strings))])
    parts = iter(shared_strings(*strings))
    first = next(parts)  # the XML declaration, then the prolog (a DTD, say)
    return rewrite_member(path, "xl/sharedStrings.xml", chain([first, prolog], parts))


def gzip_of(path: Path, parts: Iterable[bytes]) -> Path:
    with gzip.open(path, "wb", compresslevel=6) as f:
        for chunk in parts:
            f.write(chunk)
    return path
