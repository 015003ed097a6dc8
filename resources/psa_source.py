"""The PSA source resource: a local or SFTP folder of exports, and how their files are written."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from connectors.sources.base import FileSource
from connectors.sources.formats import FileFormat, FileLimits, SourceDefaults
from connectors.sources.local import LocalFolderSource
from connectors.sources.mapping import load_mapping
from resources.sftp import SftpLogin
from staging_models.db import (
    data_dir,
)
from staging_models.full_export import FullExportPolicy


class PsaSource(SftpLogin):
    """Where PSA exports arrive: a local folder or an SFTP folder, and how its files are written."""

    kind: str = Field(default="local", description="local | sftp")
    name: str = Field(default="psa", description="Recorded with every load")
    inbox: str = Field(default="", description="Local or remote folder; empty = <data>/inbox")
    archive: str = Field(default="", description="Where landed files go; empty = <inbox>/archive")
    rejected: str = Field(
        default="", description="Where refused files go; empty = 'rejected' beside the archive"
    )
    done_markers: bool = Field(default=False, description="Only take files with a NAME.done marker")
    stable_seconds: float = Field(
        default=5.0,
        description="Without markers: a file must be unchanged this long before it is taken "
        "(0: no wait; a file that changes while it is landed is still never landed)",
    )
    # File format
    encoding: str = "utf-8"
    delimiter: str = ","
    decimal_comma: bool = False
    sheet: str | None = None
    header_row: int = 1
    mapping_file: str = Field(
        default="",
        description="Vendor column mapping(s): shipped names (harvest, toggl, clockify, "
        "kimai, solidtime) or TOML paths, separated by commas; empty = canonical files",
    )
    source_timezone: str = Field(
        default="UTC", description='The zone a mapping\'s timezone = "source" stands for'
    )
    default_legal_entity: str = Field(
        default="", description="Legal entity of derived master data the export lacks"
    )
    default_currency: str = Field(
        default="", description="Currency of entries and derived projects the export lacks"
    )
    # Full exports: complete snapshots whose missing entries become tombstones
    full_export_pattern: str = Field(
        default="", description="File-name glob of full time-entry exports; empty = none"
    )
    full_export_range: str = Field(
        default="",
        description="Work dates a full export covers, FROM..TO; empty = dates in the file "
        "name, else the file's own first to last work date",
    )
    full_export_max_delete_share: str = Field(
        default="0.05",
        description="A full export that would tombstone more than this share of its range "
        "is held for an operator's confirmation",
    )

    # What one file may hold (hostile or broken exports are refused before they cost memory)
    max_file_rows: int = Field(default=FileLimits.max_rows, description="Rows per file")
    max_cell_bytes: int = Field(default=FileLimits.max_cell_bytes, description="Bytes per value")
    max_uncompressed_bytes: int = Field(
        default=FileLimits.max_uncompressed_bytes, description="Inflated bytes of an XLSX or gzip"
    )
    max_compression_ratio: float = Field(
        default=FileLimits.max_compression_ratio,
        description="Inflated / compressed size of an XLSX part or gzip stream",
    )

    def file_format(self) -> FileFormat:
        """How this source's files are written; loads and validates the mapping file, so a
        bad mapping fails before any file is read."""
        refs = [r.strip() for r in self.mapping_file.split(",") if r.strip()]
        mappings = [load_mapping(r, source_timezone=self.source_timezone) for r in refs]
        return FileFormat(
            encoding=self.encoding,
            delimiter=self.delimiter,
            decimal_comma=self.decimal_comma,
            sheet=self.sheet,
            header_row=self.header_row,
            mapping=mappings[0] if mappings else None,
            mappings=tuple(mappings[1:]),
            defaults=SourceDefaults(
                legal_entity=self.default_legal_entity or None,
                currency=self.default_currency or None,
            ),
            limits=FileLimits(
                max_rows=self.max_file_rows,
                max_cell_bytes=self.max_cell_bytes,
                max_uncompressed_bytes=self.max_uncompressed_bytes,
                max_compression_ratio=self.max_compression_ratio,
            ),
        )

    def full_export_policy(self) -> FullExportPolicy | None:
        """Which files are full exports (None: none are); a bad setting fails here."""
        return FullExportPolicy.from_settings(
            self.full_export_pattern, self.full_export_range, self.full_export_max_delete_share
        )

    def open(self) -> FileSource:
        if self.kind == "local":
            inbox = Path(self.inbox) if self.inbox else data_dir() / "inbox"
            inbox.mkdir(parents=True, exist_ok=True)
            classify = self.file_format().classify
            local = LocalFolderSource(
                inbox,
                self.archive or None,
                rejected=self.rejected or None,
                name=self.name,
                done_markers=self.done_markers,
                stable_seconds=self.stable_seconds,
            )
            local.classify = classify  # vendor file names its mappings take
            return local
        if self.kind == "sftp":
            from connectors.sources.sftp import SftpSource

            classify = self.file_format().classify
            remote = SftpSource(
                **self.login(("inbox",), "SFTP source", "Sources"),
                inbox=self.inbox,
                archive=self.archive or None,
                rejected=self.rejected or None,
                name=self.name,
                done_markers=self.done_markers,
                stable_seconds=self.stable_seconds,
            )
            remote.classify = classify  # vendor file names its mappings take
            return remote
        raise ValueError(f"unknown PSA source kind {self.kind!r}: use 'local' or 'sftp'")

    def workdir(self) -> Path:
        path = data_dir() / "work"
        path.mkdir(parents=True, exist_ok=True)
        return path
