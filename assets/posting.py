"""The posting window asset: finance launches it from the Launchpad (dry run first).

A thin wrapper around `posting.window.run_window`; everything that makes
posting safe (lock, ledger, look-up before create) lives there, so a CLI run and
a Dagster run behave the same.
"""

from datetime import date
from decimal import Decimal

from dagster import (
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from assets.metadata_tables import md_table
from assets.pools import ERP_POSTING
from assets.refusals import Refusal
from assets.validation import validated_expenses, validated_invoices, validated_time_entries
from posting.window import PostingRefused, WindowConfig, WindowResult, run_window
from resources.erp import ErpResource, PostingPolicy
from resources.staging import StagingDatabase
from staging_models.figures import amounts_by_currency, decimal_text
from staging_models.landing import unsettled_message
from staging_models.validation import conservation

POSTING_ASSET = "posting_window"
#: The only job a window runs in: it carries the `stagepost/legal_entity` tag the run queue
#: limits to one run per value.
POSTING_JOB = "posting_window_job"
#: Run tag telling dry runs from real windows in the runs list (filter on it in the UI).
WINDOW_TAG = "stagepost/window"
#: Run tag the run queue limits per unique value (`applyLimitPerUniqueValue`, dagster.yaml): the
#: one legal entity a window posts, or `all` (the job's default, for any other scope). Windows
#: of different entities run side by side; the staging lock (`posting.lock`) keeps an
#: all-entity window and an entity window apart whatever the tags say.
ENTITY_TAG = "stagepost/legal_entity"
ALL_ENTITIES = "all"
#: Run tags that name the person who launched a run: `user` is set by Dagster+ (the launching
#: user's e-mail), `dagster/user` is read by Dagster 1.13 where a deployment sets it. Dagster
#: OSS sets neither, so there the Launchpad's `operator` field says who it was.
USER_TAGS = ("user", "dagster/user")


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
    operator: str = Field(
        default="",
        description="Who launches this window (name or e-mail); required unless the run "
        "carries a user tag (Dagster+)",
    )
    note: str = Field(default="", description="Recorded with the window (who asked, why)")
    override_reason: str = Field(
        default="", description="Required to post outside the posting hours; recorded"
    )
    include_invoices: bool = Field(default=True, description="Post released invoices too")
    preview: bool = Field(
        default=False,
        description="Also write the preview workbook on a real window (a dry run always "
        "writes one)",
    )


def _date(text: str, name: str) -> date | None:
    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise Refusal(f"{name} {text!r} is not a date (YYYY-MM-DD)") from None


def _planned_figures(summary) -> dict:
    """What the plan would send (planned, not held): lines, hours, amounts per currency."""
    if summary.empty:
        return {"lines_planned": 0, "hours_planned": "0"}
    planned = summary[summary["state"] == "planned"]
    time_lines = planned[planned["document"] == "time_line"]
    invoices = planned[planned["document"] == "invoice"]
    return {
        "lines_planned": int(planned["lines"].sum()),
        "hours_planned": decimal_text(sum(time_lines["hours"], Decimal(0))),
        "amount_planned_time_lines": MetadataValue.json(
            amounts_by_currency(zip(time_lines["currency"], time_lines["amount"], strict=True))
        ),
        "amount_planned_invoices": MetadataValue.json(
            amounts_by_currency(zip(invoices["currency"], invoices["amount"], strict=True))
        ),
    }


def _exact(amounts: dict[str, str]) -> dict[str, str]:
    """The ledger's per-currency sums (exact decimal text) in the one display format."""
    return {cur: decimal_text(Decimal(v)) for cur, v in sorted(amounts.items())}


def entity_tag(legal_entities: list[str]) -> str:
    """The `stagepost/legal_entity` tag's value for a window over `legal_entities`."""
    return legal_entities[0] if len(set(legal_entities)) == 1 else ALL_ENTITIES


def _check_entity_tag(tags: dict[str, str], config: PostingWindowConfig) -> None:
    """A run tagged with one entity may post only that entity: the queue ran it beside the
    windows of other entities on the strength of that tag."""
    tag = tags.get(ENTITY_TAG, ALL_ENTITIES)
    if tag not in (ALL_ENTITIES, entity_tag(config.legal_entities)):
        scope = ", ".join(config.legal_entities) or "all legal entities"
        raise Refusal(
            f"This run is tagged {ENTITY_TAG}={tag} but its window covers {scope}. The run "
            f"queue runs one window per value of that tag: set it to the one legal entity the "
            f"window posts, or to '{ALL_ENTITIES}' (the default). Nothing was planned or posted.",
            kind="EntityTagMismatch",
        )


def window_kind(dry_run: bool) -> str:
    """The `stagepost/window` tag's value."""
    return "dry_run" if dry_run else "post"


def launched_by(tags: dict[str, str], config: PostingWindowConfig) -> str:
    """Who launched the window: the run's user tag where Dagster sets one, else `operator`."""
    for tag in USER_TAGS:
        if tags.get(tag, "").strip():
            return tags[tag].strip()
    if config.operator.strip():
        return config.operator.strip()
    raise Refusal(
        "Who is launching this window? Fill in `operator` (your name or e-mail) in the "
        "Launchpad config; it is recorded with the window. Nothing was planned or posted.",
        kind="OperatorMissing",
    )


def _who(config: PostingWindowConfig, operator: str) -> dict:
    """The window's request as given: shown on the materialization and on a refusal."""
    return {
        "operator": operator,
        "note": config.note,
        "override_reason": config.override_reason,
        "dry_run": config.dry_run,
    }


def _metadata(result: WindowResult, erp: ErpResource, who: dict) -> dict:
    """The window's figures. A dry run shows its plan only: nothing was confirmed, so no
    confirmed figures (not even zeros) appear beside it. Amounts are exact, per currency."""
    c = result.counts
    summary = result.summary
    md = {
        "window_id": result.window_id,
        "status": result.status,
        "message": result.message,
        **who,
        "erp": erp.describe(),
        "lines_sendable": int(c.get("lines_sendable", 0)),
        "held": int(c.get("time_lines_held", 0)) + int(c.get("invoices_held", 0)),
    }
    if result.status == "dry_run":
        md.update(_planned_figures(summary))
    else:
        md.update(
            {
                "confirmed": int(c.get("confirmed", 0)),
                "already_in_erp": int(c.get("already_in_erp", 0)),
                "rejected": int(c.get("rejected", 0)),
                "voided": int(c.get("voided", 0)),
                "hours_confirmed": decimal_text(Decimal(str(c.get("hours_confirmed", "0")))),
                "amount_confirmed_time_lines": MetadataValue.json(
                    _exact(c.get("amount_confirmed_time_lines", {}))
                ),
                "amount_confirmed_invoices": MetadataValue.json(
                    _exact(c.get("amount_confirmed_invoices", {}))
                ),
            }
        )
    md["counts"] = MetadataValue.json(
        {k: v for k, v in c.items() if isinstance(v, int) and not isinstance(v, bool)}
    )
    if not summary.empty:
        md["plan"] = md_table(summary)
    if result.preview_path:
        md["preview_path"] = MetadataValue.path(str(result.preview_path))
    if not result.rejections.empty:
        md["rejections"] = md_table(result.rejections.head(50))
    if not result.held_invoices.empty:  # billing holds: reason and age, oldest first
        md["held_invoices"] = md_table(result.held_invoices.head(50))
    return md


def window_config(
    config: PostingWindowConfig, posting_policy: PostingPolicy, run_id: str | None, operator: str
) -> WindowConfig:
    """The window the Launchpad's config asks for, under the deployment's posting policy (also
    what bench/end_to_end.py posts with, so it times what a user's window does)."""
    return WindowConfig(
        legal_entities=tuple(config.legal_entities),
        date_from=_date(config.date_from, "date_from"),
        date_to=_date(config.date_to, "date_to"),
        dry_run=config.dry_run,
        max_lines=config.max_lines,
        note=config.note or None,
        override_reason=config.override_reason or None,
        closed_period_policy=posting_policy.closed_period_policy,  # type: ignore[arg-type]
        billing_hold_time_and_expenses=posting_policy.billing_hold_time_and_expenses,  # type: ignore[arg-type]
        posting_hours=posting_policy.posting_hours or None,
        batch_size=posting_policy.batch_size,
        invoice_batch_size=posting_policy.invoice_batch_size,
        include_invoices=config.include_invoices,
        # A real window's preview only when asked for: at 1M lines the workbook took 4.7 of
        # the window's 19.9 CPU seconds, for a plan finance already saw in its dry run.
        preview_dir=posting_policy.previews() if config.dry_run or config.preview else None,
        run_id=run_id,
        launched_by=operator,
        lock_stale_after=posting_policy.lock_stale_after(),
        intercompany_accounts=posting_policy.intercompany_accounts,
    )


@asset(
    name=POSTING_ASSET,
    group_name="posting",
    pool=ERP_POSTING,
    kinds={"erp"},
    deps=[validated_time_entries, validated_invoices, validated_expenses],
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
    if context.run.job_name != POSTING_JOB:
        raise Refusal(
            f"posting_window runs only in {POSTING_JOB}, which keeps windows one at a time: "
            f"Jobs -> {POSTING_JOB} -> the arrow beside Materialize -> Open launchpad "
            "(dry_run, operator, note), then Materialize. "
            f"This run ({context.run.job_name}) planned and posted nothing.",
            kind="WrongJob",
        )
    _check_entity_tag(dict(context.run.tags), config)
    operator = launched_by(dict(context.run.tags), config)
    who = _who(config, operator)
    # Tell dry runs from real windows in the runs list. Dagster 1.13 has no run tags that
    # depend on the Launchpad config (job tags are fixed), so the step adds it to its run.
    context.instance.add_run_tags(context.run.run_id, {WINDOW_TAG: window_kind(config.dry_run)})
    db = staging.get_db()
    # Never post from staging that does not add up (the blocking checks run only when the
    # validation assets are in the same run; a posting window launched alone checks here).
    cons = conservation(db, ("time_entries", "invoices", "expenses"))
    if not cons["states_ok"].all():
        raise Refusal(
            unsettled_message(db, cons.loc[~cons["states_ok"], "dataset"].tolist())
            + ". Nothing was posted.",
            {**who, "conservation": md_table(cons)},
            kind="ValidationNotSettled",
        )
    window = window_config(config, posting_policy, context.run.run_id, operator)
    target = erp.get_target()
    try:
        result = run_window(db, target, window)
    except PostingRefused as e:
        raise Refusal(str(e), {**who, "erp": erp.describe()}, kind=type(e).__name__) from None
    finally:
        close = getattr(target, "close", None)
        if close:
            close()
    metadata = _metadata(result, erp, who)
    context.log.info(result.message)
    if result.status == "stopped":  # an ERP outage: the message says what to do, no stack
        raise Refusal(result.message, metadata, kind="WindowStopped")
    return MaterializeResult(metadata=metadata)
