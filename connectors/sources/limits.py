"""Limits on what one PSA file may hold, checked before a parser sees its bytes.

A 1 MB XLSX whose one cell inflates to 1 GiB drove a worker past 4 GiB before
anything was recorded; a 23 MB XLSX with 3M rows was accepted and then could not
be validated. So every compressed input is measured first, with bounded memory:

- XLSX (a zip): the central directory's sizes (zipfile refuses to inflate a member
  past its declared size, so they bound what openpyxl gets), then each XML part is
  streamed once: no DTD or entity declaration (spreadsheets never need one; they
  are how entity-expansion and external-entity attacks work, as defusedxml
  forbids), and no text run longer than the cell limit;
- gzip: the stream is inflated chunk by chunk and counted, up to the limit;
- every format: at most `max_rows` records and `max_cell_bytes` per cell, checked
  while reading (XLSX) or by one DuckDB scan (CSV, Parquet) before anything lands.

Each refusal names the limit and the setting that raises it.
"""

from __future__ import annotations

import gzip
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20
#: Below this many inflated bytes the ratio is not judged: a small, very regular part
#: (a sheet of identical rows) compresses well and is harmless whatever its ratio.
RATIO_FLOOR = 4 << 20
_MARKUP = (b"<!DOCTYPE", b"<!ENTITY")


class FileFormatError(Exception):
    """A file that cannot be read as the dataset it claims to be; names the file and the problem."""


class FileLimitError(FileFormatError):
    """A file over one of the limits; the message names the file, the limit and its setting."""


@dataclass(frozen=True)
class FileLimits:
    """What one file may hold (README, *Configuration*)."""

    max_rows: int = 1_000_000  # STAGEPOST_MAX_FILE_ROWS
    max_cell_bytes: int = 65_536  # STAGEPOST_MAX_CELL_BYTES (UTF-8 bytes of one value)
    max_uncompressed_bytes: int = 1 << 30  # STAGEPOST_MAX_UNCOMPRESSED_BYTES (XLSX, gzip)
    max_compression_ratio: float = 100.0  # STAGEPOST_MAX_COMPRESSION_RATIO (XLSX, gzip)

    def rows_error(self, name: str) -> FileLimitError:
        return FileLimitError(
            f"{name}: refused: more than {self.max_rows:,} rows "
            f"(STAGEPOST_MAX_FILE_ROWS={self.max_rows}); split the export or raise the limit"
        )

    def cell_error(self, name: str, where: str) -> FileLimitError:
        return FileLimitError(
            f"{name}: refused: {where} holds a value longer than {self.max_cell_bytes:,} bytes "
            f"(STAGEPOST_MAX_CELL_BYTES={self.max_cell_bytes})"
        )

    def inflated_error(self, name: str, part: str) -> FileLimitError:
        return FileLimitError(
            f"{name}: refused: {part} inflates to more than {self.max_uncompressed_bytes:,} "
            f"bytes (STAGEPOST_MAX_UNCOMPRESSED_BYTES={self.max_uncompressed_bytes})"
        )

    def ratio_error(self, name: str, part: str) -> FileLimitError:
        return FileLimitError(
            f"{name}: refused: {part} inflates more than {self.max_compression_ratio:g} times "
            f"its compressed size (STAGEPOST_MAX_COMPRESSION_RATIO="
            f"{self.max_compression_ratio:g}); a compression bomb?"
        )

    def over_ratio(self, inflated: int, compressed: int) -> bool:
        return inflated > RATIO_FLOOR and inflated > self.max_compression_ratio * max(compressed, 1)


def check_gzip(path: Path, limits: FileLimits) -> None:
    """Inflate a gzip file once, counting, and refuse it past the size or ratio limit.

    Memory is one chunk; the stream is abandoned as soon as a limit is passed.
    """
    compressed = path.stat().st_size
    inflated = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                inflated += len(chunk)
                if inflated > limits.max_uncompressed_bytes:
                    raise limits.inflated_error(path.name, "the gzip stream")
                if limits.over_ratio(inflated, compressed):
                    raise limits.ratio_error(path.name, "the gzip stream")
    except (OSError, EOFError, zlib.error) as e:
        raise FileLimitError(f"{path.name}: not a readable gzip file ({e})") from None


def check_xlsx(path: Path, limits: FileLimits) -> None:
    """Refuse a workbook whose parts would inflate past the limits, or whose XML declares a
    DTD or entities, or holds a text run longer than the cell limit; before openpyxl opens it."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise FileLimitError(f"{path.name}: not a readable XLSX workbook ({e})") from None
    with zf:
        infos = zf.infolist()
        total = sum(i.file_size for i in infos)
        for info in infos:
            if info.file_size > limits.max_uncompressed_bytes:
                raise limits.inflated_error(path.name, info.filename)
            if limits.over_ratio(info.file_size, info.compress_size):
                raise limits.ratio_error(path.name, info.filename)
        if total > limits.max_uncompressed_bytes:
            raise limits.inflated_error(path.name, "the workbook")
        for info in infos:
            if info.filename.endswith((".xml", ".rels")):
                _scan_xml(zf, info, path.name, limits)


def _scan_xml(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, limits: FileLimits) -> None:
    """One streaming pass over an XML part: no `<!DOCTYPE`/`<!ENTITY`, no run of text (bytes
    between two `<`) longer than the cell limit. A marker split across two chunks is caught
    by keeping the tail of the previous chunk."""
    run = 0  # length of the text run still open at the end of the previous chunk
    tail = b""
    try:
        with zf.open(info) as f:
            while chunk := f.read(_CHUNK):
                window = tail + chunk
                if any(m in window for m in _MARKUP):
                    raise FileLimitError(
                        f"{name}: refused: {info.filename} declares a DTD or XML entities, "
                        "which a spreadsheet never needs (entity expansion or external "
                        "entity attack)"
                    )
                tail = chunk[-16:]
                parts = chunk.split(b"<")
                if len(parts) == 1:
                    run += len(chunk)
                    longest = run
                else:
                    longest = max(run + len(parts[0]), *map(len, parts[1:]))
                    run = len(parts[-1])
                if longest > limits.max_cell_bytes:
                    raise limits.cell_error(name, info.filename)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise FileLimitError(f"{name}: not a readable XLSX workbook ({e})") from None
