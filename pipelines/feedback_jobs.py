"""When status is fed back to the PSA/CRM: after every posting window and every
reconciliation (asset sensors), on demand with `full_resend`, and the dead letters' replay."""

from __future__ import annotations

from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    EventLogEntry,
    RunRequest,
    SensorEvaluationContext,
    asset_sensor,
    define_asset_job,
    job,
)

from assets.feedback import (
    STATUS_FEEDBACK,
    ReplayDeadLettersConfig,
    StatusFeedbackConfig,
    replay_dead_letters_op,
    status_feedback,
)
from assets.posting import posting_window
from assets.reconciliation import reconciliation_workbook
from pipelines.launchpad import ops_only

status_feedback_job = define_asset_job(
    "status_feedback_job",
    selection=AssetSelection.assets(status_feedback),
    config=ops_only({STATUS_FEEDBACK: StatusFeedbackConfig}),
    description="Deliver posting and invoice status to the PSA/CRM (changed records only; "
    "full_resend sends everything).",
)


@job(
    description="Push again the status deliveries the webhook did not accept (dead letters).",
    config=ops_only({"replay_dead_letters_op": ReplayDeadLettersConfig}),
)
def replay_dead_letters_job() -> None:
    replay_dead_letters_op()


def _after(name: str, asset_def, what: str):
    @asset_sensor(
        asset_key=asset_def.key,
        job=status_feedback_job,
        name=name,
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.STOPPED,
        description=f"Feeds status back after every {what}.",
    )
    def _sensor(context: SensorEvaluationContext, asset_event: EventLogEntry):
        yield RunRequest(
            run_key=f"{name}-{asset_event.run_id or 'runless'}-{asset_event.timestamp}"
        )

    return _sensor


feedback_after_posting = _after("feedback_after_posting", posting_window, "posting window")
feedback_after_reconciliation = _after(
    "feedback_after_reconciliation", reconciliation_workbook, "reconciliation"
)

feedback_jobs = [status_feedback_job, replay_dead_letters_job]
feedback_sensors = [feedback_after_posting, feedback_after_reconciliation]
