"""Revenue recognition assets (docs/revenue.md): the recognized revenue per project and period,
and the revenue window that posts it as journals (its own job, `revenue_window_job`).

Thin wrappers: `staging_models.revenue.compute_revenue` computes, `posting.revenue.
run_revenue_window` posts with the posting ledger's discipline.
"""

from datetime import UTC, date, datetime

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from assets.metadata_tables import md_table
from assets.pools import ERP_POSTING, STAGING_WRITE
from assets.posting import ENTITY_TAG, _check_entity_tag, launched_by
from assets.refusals import Refusal
from assets.validation import validated_invoices, validated_master_data, validated_time_entries
from posting.revenue import RevenueConfig, run_revenue_window
from posting.window import PostingRefused
from resources.erp import ErpResource, PostingPolicy
from resources.staging import StagingDatabase
from staging_models.figures import decimal_text
from staging_models.revenue import compute_revenue

REVENUE_ASSET = "revenue_recognized"
REVENUE_WINDOW_ASSET = "revenue_window"
REVENUE_JOB = "revenue_window_job"


def _as_of(text: str) -> date:
    if not text.strip():
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise Refusal(f"as_of {text!r} is not a date (YYYY-MM-DD)") from None


class RevenueConfigFields(Config):
    """Revenue to the end of `as_of`'s period (empty: today)."""

    as_of: str = Field(default="", description="YYYY-MM-DD; empty = today")


@asset(
    name=REVENUE_ASSET,
    group_name="revenue",
    pool=STAGING_WRITE,
    kinds={"sql"},
    deps=[validated_master_data, validated_time_entries, validated_invoices],
    description=(
        "Recognized revenue per project and accounting period (table revenue_recognized): "
        "to date, the period's amount, invoiced and WIP, by each project's method."
    ),
)
def revenue_recognized(
    context: AssetExecutionContext, config: RevenueConfigFields, staging: StagingDatabase
) -> MaterializeResult:
    db = staging.get_db()
    result = compute_revenue(db, _as_of(config.as_of))
    totals = db.query_df(
        """SELECT period, currency, SUM(period_amount) AS recognized, SUM(wip) AS wip
           FROM revenue_recognized GROUP BY period, currency ORDER BY period, currency"""
    )
    for col in ("recognized", "wip"):
        totals[col] = totals[col].map(decimal_text)
    return MaterializeResult(
        metadata={
            "rows": result.rows,
            "projects": result.projects,
            "periods": f"{result.first_period} to {result.last_period}",
            "by_period": md_table(totals.tail(24)),
        }
    )


class RevenueWindowConfig(Config):
    """A revenue window: revenue journals and month-end WIP accruals (dry run by default)."""

    as_of: str = Field(default="", description="YYYY-MM-DD; revenue to this period; empty = today")
    legal_entities: list[str] = Field(default_factory=list, description="Empty = all")
    dry_run: bool = Field(default=True, description="Plan only; post nothing")
    operator: str = Field(default="", description="Who launches it (name or e-mail)")
    note: str = Field(default="", description="Recorded with the window")


@asset(
    name=REVENUE_WINDOW_ASSET,
    group_name="revenue",
    pool=ERP_POSTING,
    kinds={"erp"},
    deps=[revenue_recognized],
    description=(
        "A revenue window: balanced revenue journals per legal entity and period, and "
        "month-end WIP accruals, posted once to the ERP (ledger: journal_ledger). Dry run by "
        "default."
    ),
)
def revenue_window(
    context: AssetExecutionContext,
    config: RevenueWindowConfig,
    staging: StagingDatabase,
    erp: ErpResource,
    posting_policy: PostingPolicy,
) -> MaterializeResult:
    if context.run.job_name != REVENUE_JOB:
        raise Refusal(
            f"revenue_window runs only in {REVENUE_JOB}; this run posted nothing.",
            kind="WrongJob",
        )
    tags = dict(context.run.tags)
    _check_entity_tag(tags, config)  # type: ignore[arg-type]  (legal_entities is all it reads)
    operator = launched_by(tags, config)  # type: ignore[arg-type]  (operator is all it reads)
    window = RevenueConfig(
        as_of=_as_of(config.as_of),
        legal_entities=tuple(config.legal_entities),
        dry_run=config.dry_run,
        accounts=posting_policy.revenue_accounts,
        operator=operator,
        note=config.note or None,
        run_id=context.run.run_id,
    )
    target = erp.get_target()
    try:
        result = run_revenue_window(
            staging.get_db(), target, window, stale_after=posting_policy.lock_stale_after()
        )
    except PostingRefused as e:
        raise Refusal(str(e), {"erp": erp.describe()}, kind=type(e).__name__) from None
    finally:
        close = getattr(target, "close", None)
        if close:
            close()
    md = {
        "window_id": result.window_id,
        "status": result.status,
        "message": result.message,
        "operator": operator,
        "erp": erp.describe(),
        "counts": MetadataValue.json(
            {k: v for k, v in result.counts.items() if isinstance(v, int)}
        ),
    }
    if not result.plan.empty:
        plan = result.plan[["external_id", "kind", "journal_type", "period", "total_debit"]]
        md["plan"] = md_table(plan.assign(total_debit=plan["total_debit"].map(decimal_text)))
    context.log.info(result.message)
    if result.status == "stopped":
        raise Refusal(result.message, md, kind="WindowStopped")
    return MaterializeResult(metadata=md)


__all__ = ["ENTITY_TAG", "revenue_recognized", "revenue_window"]
