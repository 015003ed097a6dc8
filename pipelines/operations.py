"""Operator jobs launched from the Launchpad: decisions about quarantined rows."""

from dagster import Config, OpExecutionContext, job, op
from pydantic import Field

from assets.pools import STAGING_WRITE
from pipelines.resources import StagingDatabase
from staging_models.validation import ignore_quarantined


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


@job(description="Mark quarantined rows as ignored, with a reason (finance operations).")
def ignore_quarantined_job() -> None:
    ignore_quarantined_rows()
