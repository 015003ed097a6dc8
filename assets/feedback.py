"""Status fed back to the PSA/CRM (asset `status_feedback`) and the replay of webhook pushes
that failed (op `replay_dead_letters`). Thin: `staging_models.status_feedback` computes and
delivers, `staging_models.outbound` keeps the ledger; the jobs and sensors that run them
after each posting window and each reconciliation are in `pipelines/feedback_jobs.py`."""

import pandas as pd
from dagster import (
    Config,
    MaterializeResult,
    MetadataValue,
    OpExecutionContext,
    asset,
    op,
)
from pydantic import Field

from assets.metadata_tables import md_table
from assets.pools import STAGING_WRITE
from resources.erp import ErpResource
from resources.feedback import OutboundDelivery
from resources.staging import StagingDatabase
from staging_models.outbound import replay_dead_letters
from staging_models.status_feedback import deliver_status

GROUP = "feedback"
STATUS_FEEDBACK = "status_feedback"


class StatusFeedbackConfig(Config):
    full_resend: bool = Field(
        default=False,
        description="Send every record again, not only what changed since the last delivery",
    )


@asset(
    name=STATUS_FEEDBACK,
    group_name=GROUP,
    pool=STAGING_WRITE,
    kinds={"csv", "json"},
    description="Per time entry and invoice, what the ERP made of it (posted, invoiced, "
    "reversed; invoice number, status and amount open), delivered to the PSA/CRM as files "
    "(and a webhook push): only what changed since the last delivery.",
)
def status_feedback(
    context,
    config: StatusFeedbackConfig,
    staging: StagingDatabase,
    erp: ErpResource,
    outbound: OutboundDelivery,
) -> MaterializeResult:
    db = staging.get_db()
    target = erp.get_target()
    targets = outbound.targets()
    try:
        results = deliver_status(db, target, targets, full_resend=config.full_resend)
    finally:
        for thing in (target, targets.folder):
            close = getattr(thing, "close", None)
            if close:
                close()
    table = pd.DataFrame(
        [
            {
                "feed": r.feed,
                "sequence": r.sequence,
                "records": r.records,
                "webhook": r.webhook or "",
                "resumed": r.resumed,
                "message": r.message,
            }
            for r in results
        ]
    )
    for r in results:
        context.log.info(f"{r.feed}: {r.message}")
    return MaterializeResult(
        metadata={
            "deliveries": md_table(table),
            "records": sum(r.records for r in results),
            "full_resend": config.full_resend,
            "target": targets.describe(),
            "dead_letters": sum(1 for r in results if r.webhook == "dead_letter"),
            "files": MetadataValue.json([f for r in results for f in r.files]),
        }
    )


class ReplayDeadLettersConfig(Config):
    feed: str = Field(default="", description="Only this feed (empty: every feed)")


@op(pool=STAGING_WRITE)
def replay_dead_letters_op(
    context: OpExecutionContext,
    config: ReplayDeadLettersConfig,
    staging: StagingDatabase,
    outbound: OutboundDelivery,
) -> dict:
    """Push the dead letters again (same body and idempotency key); fails while any stays."""
    webhook = outbound.webhook()
    if webhook is None:
        raise ValueError(
            "no webhook configured (STAGEPOST_FEEDBACK_WEBHOOK_URL): nothing to replay"
        )
    counts = replay_dead_letters(staging.get_db(), webhook, feed=config.feed.strip() or None)
    context.log.info(f"dead letters: {counts}")
    if counts["still_dead"]:
        raise RuntimeError(
            f"{counts['still_dead']} dead letters were still not accepted "
            f"({counts['replayed']} replayed); see outbound_dead_letters.last_error"
        )
    return counts
