"""Operator ops launched from the Launchpad: decisions about quarantined rows and held full
exports. Their jobs are assembled in `pipelines/operator_jobs.py`."""

from enum import StrEnum

from dagster import Config, Failure, OpExecutionContext, op
from pydantic import Field

from assets.pools import STAGING_WRITE
from connectors.sources.canonical import DATASETS
from resources.staging import StagingDatabase
from staging_models.full_export import decide
from staging_models.validation import ignore_quarantined, validate_all

#: The datasets that have quarantined rows: a Launchpad enum, so a typo is refused at launch
#: (before, a misspelt dataset matched no row and the run succeeded having ignored nothing).
QuarantineDataset = StrEnum("QuarantineDataset", {name: name for name in DATASETS})


class IgnoreQuarantinedConfig(Config):
    dataset: QuarantineDataset = Field(description="One of: " + ", ".join(DATASETS))
    reason: str = Field(description="Why these rows will never be posted (kept in the audit trail)")
    operator: str = Field(description="Who decides (name or e-mail); required")
    row_keys: list[str] = Field(default_factory=list, description="Keys, e.g. entry ids")
    rule_code: str | None = Field(default=None, description="Or: every open row breaking this rule")


def _refusal(config: IgnoreQuarantinedConfig) -> str | None:
    """Why the decision cannot be recorded as given (one sentence), or None."""
    if not config.operator.strip():
        return "operator is empty: say who decides (name or e-mail); nothing was ignored"
    if not config.reason.strip():
        return "reason is empty: say why these rows will never be posted; nothing was ignored"
    if not [k for k in config.row_keys if k.strip()] and not (config.rule_code or "").strip():
        return "name the rows to ignore (row_keys, or rule_code for every open row breaking it)"
    return None


@op(pool=STAGING_WRITE)
def ignore_quarantined_rows(
    context: OpExecutionContext, config: IgnoreQuarantinedConfig, staging: StagingDatabase
) -> int:
    """Mark open quarantine rows ignored, with the operator and reason recorded. A decision
    without an operator or a reason, or one that matches no open row, fails the run: a green
    run means rows were ignored."""
    refusal = _refusal(config)
    if refusal:
        raise Failure(description=refusal, allow_retries=False)
    dataset = config.dataset.value
    keys = [k.strip() for k in config.row_keys if k.strip()]
    rule = (config.rule_code or "").strip() or None
    n = ignore_quarantined(
        staging.get_db(),
        dataset,
        reason=config.reason.strip(),
        actor=f"{config.operator.strip()} (run {context.run_id})",
        row_keys=keys or None,
        rule_code=rule,
    )
    if n == 0:
        what = f"rule {rule}" if rule else f"row keys {', '.join(keys)}"
        if rule and keys:
            what = f"rule {rule} and row keys {', '.join(keys)}"
        raise Failure(
            description=f"no open quarantined {dataset} row matches {what}: nothing was "
            "ignored (see the finance desk's worklist for open rows)",
            metadata={"rows_ignored": 0},
            allow_retries=False,
        )
    context.log.info(f"{n} quarantined {dataset} rows marked ignored: {config.reason.strip()}")
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
