"""The op that sends the finance desk's daily digest (`staging_models/desk_digest.py`): one
e-mail per owner of new and overdue exceptions. Its job and weekday schedule:
`pipelines/desk_jobs.py`."""

from datetime import UTC, datetime

from dagster import Failure, OpExecutionContext, op

from assets.pools import STAGING_WRITE
from config.settings import current
from reconciliation.report_files import desk_base_url
from resources.staging import StagingDatabase
from staging_models.desk_digest import send


@op(pool=STAGING_WRITE)  # it rebuilds desk_items from the quarantine first
def desk_digest_op(context: OpExecutionContext, staging: StagingDatabase) -> int:
    """Send the digests; skipped (with a log line saying why) when no SMTP host is set. An owner
    without an address fails the run after the others' mail went out, so it is seen."""
    if not current().desk_smtp_host:
        context.log.warning(
            "daily digest skipped: STAGEPOST_DESK_SMTP_HOST is not set (no mail server)"
        )
        context.add_output_metadata({"sent": 0, "skipped": "no SMTP host"})
        return 0
    sent, missing = send(staging.get_db(), desk_base_url(), datetime.now(UTC))
    context.log.info(f"daily digest: {sent} e-mails sent")
    context.add_output_metadata({"sent": sent, "owners_without_address": ", ".join(missing)})
    if missing:
        raise Failure(
            description=f"{sent} digests sent; no e-mail address for: {', '.join(missing)} "
            "(STAGEPOST_DESK_OWNER_EMAILS or the desk user's e-mail)"
        )
    return sent
