"""Dagster resources from the deployment settings (documented in the README).

The settings are read and validated once, in `config.settings`; a bad value stops
the code location at load with a message naming the variable. Secrets are handed to the
resources as `EnvVar`s so that Dagster resolves them at run time and never shows their values.
"""

from __future__ import annotations

from typing import Any

from dagster import EnvVar

from config.settings import Settings, current, env_name
from resources.api_source import ApiSource
from resources.erp import ErpResource, PostingPolicy
from resources.feedback import OutboundDelivery
from resources.psa_source import PsaSource
from resources.reports import ReportUpload
from resources.staging import StagingDatabase


def _secret(s: Settings, field: str) -> EnvVar | None:
    """The secret's variable for Dagster to resolve, when it is set (the model only knows
    that it is; its value never leaves the environment here)."""
    return EnvVar(env_name(field)) if getattr(s, field) is not None else None


def staging_resource(s: Settings | None = None) -> StagingDatabase:
    s = s or current()
    return StagingDatabase(url=s.staging_url, password=_secret(s, "staging_password"))


def psa_source_resource(s: Settings | None = None) -> PsaSource:
    s = s or current()
    return PsaSource(
        kind=s.source_kind,
        name=s.source_name,
        inbox=s.inbox,
        archive=s.archive,
        rejected=s.rejected,
        done_markers=s.done_markers,
        stable_seconds=s.stable_seconds,
        host=s.sftp_host,
        port=s.sftp_port,
        username=s.sftp_user,
        key_path=s.sftp_key,
        key_passphrase=_secret(s, "sftp_key_passphrase"),
        known_hosts_path=s.sftp_known_hosts,
        encoding=s.encoding,
        delimiter=s.delimiter,
        decimal_comma=s.decimal_comma,
        sheet=s.sheet,
        header_row=s.header_row,
        mapping_file=s.mapping or s.mapping_file,
        default_legal_entity=s.default_legal_entity or "",
        source_timezone=s.source_timezone,
        default_currency=s.default_currency or "",
        full_export_pattern=s.full_export_pattern,
        full_export_range=s.full_export_range,
        full_export_max_delete_share=s.full_export_max_delete_share,
        max_file_rows=s.max_file_rows,
        max_cell_bytes=s.max_cell_bytes,
        max_uncompressed_bytes=s.max_uncompressed_bytes,
        max_compression_ratio=s.max_compression_ratio,
    )


def erp_resource(s: Settings | None = None) -> ErpResource:
    """ErpResource from STAGEPOST_ERP_* (password as EnvVar)."""
    s = s or current()
    return ErpResource(
        kind=s.erp_kind,
        url=s.erp_url,
        password=_secret(s, "erp_password"),
        database=s.erp_database,
        user=s.erp_user,
        # Tryton: legal entity -> company id, e.g. {"US01": 1, "DE01": 2}; default: company name.
        legal_entities=s.erp_legal_entities,
        expense_clearing_account=s.erp_expense_clearing_account or 0,
    )


def posting_policy_resource(s: Settings | None = None) -> PostingPolicy:
    s = s or current()
    return PostingPolicy(
        posting_hours=s.posting_hours,
        closed_period_policy=s.closed_period_policy,
        billing_hold_time_and_expenses=s.billing_hold_time_and_expenses,
        preview_dir=s.preview_dir,
        lock_stale_seconds=s.posting_lock_stale_seconds,
        revenue_accounts=s.revenue_accounts,
        intercompany_accounts=s.intercompany_accounts,
    )


def report_upload_resource(s: Settings | None = None) -> ReportUpload:
    """ReportUpload from STAGEPOST_REPORTS_SFTP_*; the server and key default to the PSA
    source's STAGEPOST_SFTP_* (often the same server), the folder enables the upload."""
    s = s or current()

    def pick(own: Any, psa: Any) -> Any:
        return psa if own is None else own

    passphrase = "reports_sftp_key_passphrase"
    if s.reports_sftp_key_passphrase is None:
        passphrase = "sftp_key_passphrase"
    return ReportUpload(
        folder=s.reports_sftp_folder,
        host=pick(s.reports_sftp_host, s.sftp_host),
        port=pick(s.reports_sftp_port, s.sftp_port),
        username=pick(s.reports_sftp_user, s.sftp_user),
        key_path=pick(s.reports_sftp_key, s.sftp_key),
        key_passphrase=_secret(s, passphrase),
        known_hosts_path=pick(s.reports_sftp_known_hosts, s.sftp_known_hosts),
    )


def outbound_delivery_resource(s: Settings | None = None) -> OutboundDelivery:
    """OutboundDelivery from STAGEPOST_FEEDBACK_*; over SFTP it logs in as the PSA source
    does (STAGEPOST_SFTP_*), the PSA side usually reading its feedback there."""
    s = s or current()
    return OutboundDelivery(
        folder=str(s.feedback_dir or ""),
        sftp_folder=s.feedback_sftp_folder,
        webhook_url=_secret(s, "feedback_webhook_url"),
        webhook_attempts=s.feedback_webhook_attempts,
        host=s.sftp_host or "",
        port=s.sftp_port,
        username=s.sftp_user or "",
        key_path=s.sftp_key or "",
        key_passphrase=_secret(s, "sftp_key_passphrase"),
        known_hosts_path=s.sftp_known_hosts or "",
    )


#: The API vendors, each a resource `<vendor>_api` (assets `api_<vendor>_*`).
API_VENDORS = ("harvest", "toggl", "clockify", "kimai")


def api_source_resource(vendor: str, s: Settings | None = None) -> ApiSource:
    """ApiSource of one vendor from STAGEPOST_<VENDOR>_* and STAGEPOST_API_* (token as EnvVar)."""
    s = s or current()
    return ApiSource(
        vendor=vendor,
        token=_secret(s, f"{vendor}_token"),
        url=getattr(s, f"{vendor}_url"),
        account_id=s.harvest_account_id if vendor == "harvest" else "",
        workspace_id={"clockify": s.clockify_workspace_id, "toggl": s.toggl_workspace_id}.get(
            vendor, ""
        ),
        user_agent=s.harvest_user_agent,
        lookback_days=s.api_lookback_days,
        initial_days=s.api_initial_days,
        full_pull_days=s.api_full_pull_days,
        timezone=s.api_timezone,
        approval=s.api_approval,
        default_currency=s.default_currency or "",
        default_legal_entity=s.default_legal_entity or "",
        max_delete_share=s.full_export_max_delete_share,
    )


def api_source_resources(s: Settings | None = None) -> dict[str, ApiSource]:
    """Every vendor's resource by its key (`harvest_api`, ...), configured or not."""
    return {f"{v}_api": api_source_resource(v, s) for v in API_VENDORS}
