"""Deployment settings from environment variables (documented in the README).

Plain settings are read here; secrets are handed to resources as `EnvVar` so
Dagster resolves them at run time and never shows their values.
"""

from __future__ import annotations

import json
import os

from dagster import EnvVar

from connectors.sources.limits import FileLimits
from resources.erp import ErpResource, PostingPolicy
from resources.psa_source import PsaSource
from resources.reports import ReportUpload
from resources.staging import StagingDatabase


def delimiter(value: str) -> str:
    """A delimiter as written in an environment file: `;`, `tab` or `\\t` (a tab is hard to
    type in a .env file)."""
    return "\t" if value.lower() in {"tab", "\\t"} else value


def _secret(name: str) -> EnvVar | None:
    return EnvVar(name) if os.environ.get(name) else None


def staging_resource() -> StagingDatabase:
    return StagingDatabase(
        url=os.environ.get("STAGEPOST_STAGING_URL", ""),
        password=_secret("STAGEPOST_STAGING_PASSWORD"),
    )


def psa_source_resource() -> PsaSource:
    e = os.environ
    kind = e.get("STAGEPOST_SOURCE_KIND", "local")
    # A sender may still be writing: without done markers, files (local or SFTP) must hold
    # still for a few seconds before they count as complete.
    stable_default = "5"
    return PsaSource(
        kind=kind,
        name=e.get("STAGEPOST_SOURCE_NAME", "psa"),
        inbox=e.get("STAGEPOST_INBOX", ""),
        archive=e.get("STAGEPOST_ARCHIVE", ""),
        rejected=e.get("STAGEPOST_REJECTED", ""),
        done_markers=e.get("STAGEPOST_DONE_MARKERS", "false").lower() == "true",
        stable_seconds=float(e.get("STAGEPOST_STABLE_SECONDS", stable_default)),
        host=e.get("STAGEPOST_SFTP_HOST", ""),
        port=int(e.get("STAGEPOST_SFTP_PORT", "22")),
        username=e.get("STAGEPOST_SFTP_USER", ""),
        key_path=e.get("STAGEPOST_SFTP_KEY", ""),
        key_passphrase=_secret("STAGEPOST_SFTP_KEY_PASSPHRASE"),
        known_hosts_path=e.get("STAGEPOST_SFTP_KNOWN_HOSTS", ""),
        encoding=e.get("STAGEPOST_ENCODING", "utf-8"),
        delimiter=delimiter(e.get("STAGEPOST_DELIMITER", ",")),
        decimal_comma=e.get("STAGEPOST_DECIMAL_COMMA", "false").lower() == "true",
        sheet=e.get("STAGEPOST_SHEET") or None,
        header_row=int(e.get("STAGEPOST_HEADER_ROW", "1")),
        mapping_file=e.get("STAGEPOST_MAPPING_FILE", ""),
        full_export_pattern=e.get("STAGEPOST_FULL_EXPORT_PATTERN", ""),
        full_export_range=e.get("STAGEPOST_FULL_EXPORT_RANGE", ""),
        full_export_max_delete_share=e.get("STAGEPOST_FULL_EXPORT_MAX_DELETE_SHARE", "0.05"),
        max_file_rows=int(e.get("STAGEPOST_MAX_FILE_ROWS", str(FileLimits.max_rows))),
        max_cell_bytes=int(e.get("STAGEPOST_MAX_CELL_BYTES", str(FileLimits.max_cell_bytes))),
        max_uncompressed_bytes=int(
            e.get("STAGEPOST_MAX_UNCOMPRESSED_BYTES", str(FileLimits.max_uncompressed_bytes))
        ),
        max_compression_ratio=float(
            e.get("STAGEPOST_MAX_COMPRESSION_RATIO", str(FileLimits.max_compression_ratio))
        ),
    )


def erp_resource() -> ErpResource:
    """ErpResource from STAGEPOST_ERP_* environment variables (password as EnvVar)."""
    e = os.environ
    return ErpResource(
        kind=e.get("STAGEPOST_ERP_KIND", "sql"),
        url=e.get("STAGEPOST_ERP_URL", ""),
        password=_secret("STAGEPOST_ERP_PASSWORD"),
        database=e.get("STAGEPOST_ERP_DATABASE", ""),
        user=e.get("STAGEPOST_ERP_USER", "admin"),
        # Tryton: legal entity -> company id, e.g. {"US01": 1, "DE01": 2}; default: company name.
        legal_entities=json.loads(e.get("STAGEPOST_ERP_LEGAL_ENTITIES", "{}")),
    )


def posting_policy_resource() -> PostingPolicy:
    e = os.environ
    return PostingPolicy(
        posting_hours=e.get("STAGEPOST_POSTING_HOURS", ""),
        closed_period_policy=e.get("STAGEPOST_CLOSED_PERIOD_POLICY", "next_open"),
        preview_dir=e.get("STAGEPOST_PREVIEW_DIR", ""),
        lock_stale_seconds=float(e.get("STAGEPOST_POSTING_LOCK_STALE_SECONDS", "900")),
    )


def report_upload_resource() -> ReportUpload:
    """ReportUpload from STAGEPOST_REPORTS_SFTP_*; the server and key default to the PSA
    source's STAGEPOST_SFTP_* (often the same server), the folder enables the upload."""
    e = os.environ

    def get(name: str, default: str = "") -> str:
        return e.get(f"STAGEPOST_REPORTS_SFTP_{name}") or e.get(f"STAGEPOST_SFTP_{name}", default)

    return ReportUpload(
        folder=e.get("STAGEPOST_REPORTS_SFTP_FOLDER", ""),
        host=get("HOST"),
        port=int(get("PORT", "22")),
        username=get("USER"),
        key_path=get("KEY"),
        key_passphrase=_secret("STAGEPOST_REPORTS_SFTP_KEY_PASSPHRASE")
        or _secret("STAGEPOST_SFTP_KEY_PASSPHRASE"),
        known_hosts_path=get("KNOWN_HOSTS"),
    )
