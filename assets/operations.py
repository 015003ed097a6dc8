"""Operator ops launched from the Launchpad: decisions about quarantined rows and held full
exports. Their jobs are assembled in `pipelines/operator_jobs.py`."""

from dagster import Config, OpExecutionContext, op
from pydantic import Field

from assets.pools import STAGING_WRITE
from resources.staging import StagingDatabase
from staging_models.full_export import decide
from staging_models.validation import ignore_quarantined, validate_all


class IgnoreQuarantinedConfig(Config):
    dataset: str = Field(description="time_entries, invoices, projects, ...")
    reason: str = Field(description="Why these rows will never be posted (kept in the audit trail)")
    operator: str = Field(description="Who decides (name or e-mail)")
    row_keys: list[str] = Field(default_factory=list, description="Keys, e.g. entry ids")
    rule_code: str | None = Field(default=None, description="Or: every open row breaking this rule")


@op(pool=STAGING_WRITE)
def ignore_quarantined_rows(
    context: OpExecutionContext, config: IgnoreQuarantinedConfig, staging: StagingDatabase
) -> int:
    """Mark open quarantine rows ignored, with the operator and reason recorded."""
    n = ignore_quarantined(
        staging.get_db(),
        config.dataset,
        reason=config.reason,
        actor=f"{config.operator} (run {context.run_id})",
        row_keys=config.row_keys or None,
        rule_code=config.rule_code,
    )
    context.log.info(f"{n} quarantined {config.dataset} rows marked ignored: {config.reason}")
    context.add_output_metadata({"rows_ignored": n})
    return n


class ConfirmFullExportConfig(Config):
    full_export: str = Field(description="The held full export: its load id or file name")
    operator: str = Field(description="Who decides (name or e-mail); required")
    reason: str = Field(description="Why (kept in the audit trail full_export_events)")
    action: str = Field(
        default="apply",
        description="apply: tombstone the entries it lacks (the next posting window reverses "
        "posted ones); dismiss: the export was incomplete, tombstone nothing",
    )


@op
def decide_full_export(
    context: OpExecutionContext, config: ConfirmFullExportConfig, staging: StagingDatabase
) -> int:
    """Apply or dismiss a held full export's tombstones, audited, then settle them (validation
    of time entries), so the next posting window can reverse what was posted."""
    db = staging.get_db()
    result = decide(
        db,
        config.full_export,
        operator=config.operator,
        reason=config.reason,
        action=config.action,
        run_id=context.run_id,
    )
    validate_all(
        db, actor=f"{config.operator.strip()} (run {context.run_id})", datasets=("time_entries",)
    )
    context.log.info(
        f"{result.file_name}: {result.status} by {config.operator.strip()}: "
        f"{result.tombstoned_entries} tombstoned, {result.skipped_entries} skipped "
        f"(changed or delivered again since)"
    )
    context.add_output_metadata(
        {
            "full_export": result.file_name,
            "load_id": result.load_id,
            "status": result.status,
            "entries_tombstoned": result.tombstoned_entries,
            "entries_skipped": result.skipped_entries,
        }
    )
    return result.tombstoned_entries
