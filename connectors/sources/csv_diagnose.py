"""Why a CSV cannot be read, in words a finance user can act on.

DuckDB's own messages name the sniffer, its search space, full paths and
options, and count lines in ways that do not match the file (a record may span
lines; its sniffer reports a guess). When DuckDB refuses a file, this module reads
it once more, streaming with bounded memory, and names the first problem with the
line as a text editor counts it: an undecodable byte, a NUL byte, a quoted value
never closed, a stray quote, a record with the wrong number of values, a value
over the cell limit, mixed line endings. It runs only on a file DuckDB refused,
so the per-record loop of the csv module never touches a good file.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from connectors.sources.limits import FileFormatError, FileLimits

_CHUNK = 1 << 20
_BOM = codecs.BOM_UTF8
_LONE_LF = re.compile(rb"(?<!\r)\n")


def open_bytes(path: Path) -> BinaryIO:
    """The file's bytes, inflated on the fly when it is gzip (by its magic, not its name)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")  # type: ignore[return-value]


def _chunks(path: Path) -> Iterator[bytes]:
    with open_bytes(path) as f:
        while chunk := f.read(_CHUNK):
            yield chunk


def prescan(path: Path, name: str, limits: FileLimits, *, nul_is_error: bool) -> None:
    """One streaming pass over a CSV's (inflated) bytes before DuckDB reads it: gzip size and
    ratio limits, NUL bytes (DuckDB would land them silently) and an empty file."""
    compressed = path.stat().st_size
    inflated = lines = 0
    with open_bytes(path) as f:
        gz = isinstance(f, gzip.GzipFile)
        try:
            while chunk := f.read(_CHUNK):
                inflated += len(chunk)
                if gz and inflated > limits.max_uncompressed_bytes:
                    raise limits.inflated_error(name, "the gzip stream")
                if gz and limits.over_ratio(inflated, compressed):
                    raise limits.ratio_error(name, "the gzip stream")
                if nul_is_error and (at := chunk.find(b"\0")) >= 0:
                    line = lines + chunk.count(b"\n", 0, at) + 1
                    raise FileFormatError(
                        f"{name}: line {line} holds a NUL byte, which text never does "
                        "(a binary file, or UTF-16 text: then set STAGEPOST_ENCODING=utf-16)"
                    )
                lines += chunk.count(b"\n")
        except (OSError, EOFError) as e:
            raise FileFormatError(f"{name}: not a readable gzip file ({e})") from None
    if inflated == 0 or (inflated == len(_BOM) and _first_bytes(path) == _BOM):
        raise FileFormatError(f"{name}: the file is empty (not even a header row)")


def _first_bytes(path: Path) -> bytes:
    with open_bytes(path) as f:
        return f.read(len(_BOM))


def _utf8_and_line_endings(path: Path, name: str) -> str | None:
    """The first undecodable byte, as an error; else a note on mixed line endings, if any."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    offset = lines = 0
    style: bytes | None = None  # b"\r\n" or b"\n", from the first line
    mixed_at: int | None = None
    prev_cr = False
    for chunk in _chunks(path):
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as e:
            line = lines + chunk.count(b"\n", 0, max(e.start, 0)) + 1
            return (
                f"{name}: line {line} is not valid UTF-8 (byte {offset + e.start + 1}); "
                "if the PSA writes another encoding, set STAGEPOST_ENCODING (e.g. cp1252)"
            )
        if mixed_at is None:
            if style is None and (nl := chunk.find(b"\n")) >= 0:
                style = b"\r\n" if (chunk[nl - 1 : nl] == b"\r" if nl else prev_cr) else b"\n"
            if style == b"\r\n" and (m := _LONE_LF.search(chunk, 1 if prev_cr else 0)):
                mixed_at = lines + chunk.count(b"\n", 0, m.start()) + 1
            elif style == b"\n" and (at := chunk.find(b"\r\n")) >= 0:
                mixed_at = lines + chunk.count(b"\n", 0, at) + 1
        prev_cr = chunk.endswith(b"\r")
        lines += chunk.count(b"\n")
        offset += len(chunk)
    if mixed_at is not None:
        first = "CRLF" if style == b"\r\n" else "LF"
        other = "LF" if style == b"\r\n" else "CRLF"
        return (
            f"{name}: line {mixed_at} ends with {other} while line 1 ends with {first} "
            "(mixed line endings); re-export the file with one kind of line ending"
        )
    return None


def records(path: Path, name: str, delimiter: str, limits: FileLimits) -> str | None:
    """The first structural problem found by the csv module, with the line the record starts."""
    before = csv.field_size_limit(max(limits.max_cell_bytes, 1))  # process-wide: set back below
    try:
        return _first_bad_record(path, name, delimiter, limits)
    finally:
        csv.field_size_limit(before)


def _first_bad_record(path: Path, name: str, delimiter: str, limits: FileLimits) -> str | None:
    with open_bytes(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
        reader = csv.reader(text, delimiter=delimiter, quotechar='"', strict=True)
        width: int | None = None
        start = 1
        while True:
            start = reader.line_num + 1
            try:
                record = next(reader)
            except StopIteration:
                return None
            except csv.Error as e:
                why = str(e)
                if "unexpected end of data" in why or "newline inside string" in why:
                    return (
                        f"{name}: line {start}: a quoted value is never closed (unterminated quote)"
                    )
                if "field larger than field limit" in why:
                    if _odd_quotes_from(path, start):  # the "value" runs to the end of the file
                        return f"{name}: line {start}: a quoted value is never closed (unterminated quote)"
                    return str(limits.cell_error(name, f"line {start}"))
                if "NUL" in why:
                    return f"{name}: line {start} holds a NUL byte"
                if "expected after" in why:
                    return (
                        f"{name}: line {reader.line_num}: a quote inside a quoted value is not "
                        'doubled (write "" for a quote inside quotes)'
                    )
                return f"{name}: line {start}: {why}"
            if not record:
                continue  # a blank line
            if width is None:
                width = len(record)
                continue
            if len(record) != width:
                return (
                    f"{name}: line {start} has {len(record)} values where the header has "
                    f"{width} (inconsistent column count)"
                )
            big = max(len(v.encode()) for v in record)
            if big > limits.max_cell_bytes:
                return str(limits.cell_error(name, f"line {start}"))


def _odd_quotes_from(path: Path, line: int) -> bool:
    """Whether the quotes from the start of `line` to the end of the file cannot pair up: then
    the quoted value opened there is never closed (bounded memory, one pass)."""
    lines = 1
    quotes = 0
    for chunk in _chunks(path):
        if lines < line:
            cut = 0
            while lines < line and (nl := chunk.find(b"\n", cut)) >= 0:
                lines, cut = lines + 1, nl + 1
            if lines < line:
                continue
            chunk = chunk[cut:]
        quotes += chunk.count(b'"')
    return quotes % 2 == 1


def explain(path: Path, name: str, delimiter: str, limits: FileLimits, error: Exception) -> str:
    """A message naming the file, the line and the cause of a read failure; no paths, no SQL.

    Falls back to the first sentence of DuckDB's message, with any path removed.
    """
    found = _utf8_and_line_endings(path, name)
    if found and "mixed line endings" not in found:
        return found
    structural = records(path, name, delimiter, limits)
    if structural:
        return structural
    if found:
        return found
    return f"{name}: cannot be read as CSV ({first_sentence(str(error), path)})"


def first_sentence(message: str, path: Path) -> str:
    text = message.split("\n", 1)[0].replace(str(path), path.name)
    text = re.sub(r"^[A-Za-z ]+Error: ", "", text)
    return re.sub(r"(/[^\s\"']+)+/([^/\s\"']+)", r"\2", text).strip() or "unreadable"
