"""The posting window asset: finance launches it from the Launchpad (dry run first).

A thin wrapper around `staging_models.posting.run_window`; everything that makes
posting safe (lock, ledger, look-up before create) lives there, so a CLI run and
a Dagster run behave the same.
"""

from datetime import date

from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from pipelines.erp_resources import ErpResource, PostingPolicy
from pipelines.resources import StagingDatabase
from staging_models.posting import PostingRefused, WindowConfig, WindowResult, run_window
from staging_models.validation import conservation

POSTING_ASSET = "posting_window"


class PostingWindowConfig(Config):
    """What to post. Leave the dates empty to post everything validated and not yet posted."""

    legal_entities: list[str] = Field(
        default_factory=list,
        description="Entries and invoices of these legal entities (empty = all); a correction "
        "goes whole: its reversal and new post together, if either is in scope",
    )
    date_from: str = Field(
        default="",
        description="YYYY-MM-DD (work or issue date), inclusive; selects entries and invoices "
        "as legal_entities does",
    )
    date_to: str = Field(default="", description="YYYY-MM-DD, inclusive; as date_from")
    dry_run: bool = Field(default=True, description="Plan and preview only; post nothing")
    max_lines: int | None = Field(
        default=None, description="Refuse the window if it would send more lines"
    )
    note: str = Field(default="", description="Recorded with the window")
    override_reason: str = Field(
        default="", description="Required to post outside the posting hours; recorded"
    )
    include_invoices: bool = Field(default=True, description="Post released invoices too")


def _date(text: str, name: str) -> date | None:
    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise Failure(description=f"{name} {text!r} is not a date (YYYY-MM-DD)") from None


def _metadata(result: WindowResult, erp: ErpResource) -> dict:
    c = result.counts
    summary = result.summary
    md = {
        "window_id": result.window_id,
        "status": result.status,
        "message": result.message,
        "erp": erp.describe(),
        "lines_sendable": int(c.get("lines_sendable", 0)),
        "confirmed": int(c.get("confirmed", 0)),
        "already_in_erp": int(c.get("already_in_erp", 0)),
        "rejected": int(c.get("rejected", 0)),
        "held": int(c.get("time_lines_held", 0)) + int(c.get("invoices_held", 0)),
        "voided": int(c.get("voided", 0)),
        "counts": MetadataValue.json({k: v for k, v in c.items() if not isinstance(v, dict)}),
        "hours_confirmed": str(c.get("hours_confirmed", "0")),
        "amount_confirmed": MetadataValue.json(c.get("amount_confirmed", {})),
    }
    if not summary.empty:
        md["plan"] = MetadataValue.md(summary.astype(str).to_markdown(index=False))
    if result.preview_path:
        md["preview_path"] = MetadataValue.path(str(result.preview_path))
    if not result.rejections.empty:
        md["rejections"] = MetadataValue.md(
            result.rejections.head(50).astype(str).to_markdown(index=False)
        )
    return md


@asset(
    name=POSTING_ASSET,
    group_name="posting",
    kinds={"erp"},
    deps=["validated_time_entries", "validated_invoices"],
    description=(
        "A posting window: validated time entries and released invoices posted to the ERP, "
        "once, with reversals for corrections (ledger: posting_ledger, invoice_ledger, "
        "posting_windows). Dry run by default."
    ),
)
def posting_window(
    context: AssetExecutionContext,
    config: PostingWindowConfig,
    staging: StagingDatabase,
    erp: ErpResource,
    posting_policy: PostingPolicy,
) -> MaterializeResult:
    db = staging.get_db()
    # Never post from staging that does not add up (the blocking checks run only when the
    # validation assets are in the same run; a posting window launched alone checks here).
    cons = conservation(db, ("time_entries", "invoices"))
    if not cons["states_ok"].all():
        raise Failure(
            description="validation has not settled every row; posting refused until it is "
            "re-run: " + ", ".join(cons.loc[~cons["states_ok"], "dataset"]),
            metadata={"conservation": MetadataValue.md(cons.to_markdown(index=False))},
        )
    window = WindowConfig(
        legal_entities=tuple(config.legal_entities),
        date_from=_date(config.date_from, "date_from"),
        date_to=_date(config.date_to, "date_to"),
        dry_run=config.dry_run,
        max_lines=config.max_lines,
        note=config.note or None,
        override_reason=config.override_reason or None,
        closed_period_policy=posting_policy.closed_period_policy,  # type: ignore[arg-type]
        posting_hours=posting_policy.posting_hours or None,
        batch_size=posting_policy.batch_size,
        invoice_batch_size=posting_policy.invoice_batch_size,
        include_invoices=config.include_invoices,
        preview_dir=posting_policy.previews(),
        run_id=context.run.run_id,
        launched_by=context.run.tags.get("launched_by")
        or context.run.tags.get("user")
        or "dagster",
        lock_stale_after=posting_policy.lock_stale_after(),
    )
    target = erp.get_target()
    try:
        result = run_window(db, target, window)
    except PostingRefused as e:
        raise Failure(description=str(e), metadata={"erp": erp.describe()}) from None
    finally:
        close = getattr(target, "close", None)
        if close:
            close()
    metadata = _metadata(result, erp)
    context.log.info(result.message)
    if result.status == "stopped":
        raise Failure(description=result.message, metadata=metadata)
    return MaterializeResult(metadata=metadata)
