"""The finance desk's daily digest as a Dagster job (its op: `assets/desk_digest.py`) and its
schedule: weekdays at 07:00 in STAGEPOST_TIMEZONE. The schedule starts running when the
deployment sets an SMTP host (STAGEPOST_DESK_SMTP_HOST) and stopped otherwise; switched on
without one, the run skips with a log line saying so."""

from dagster import DefaultScheduleStatus, ScheduleDefinition, job

from assets.desk_digest import desk_digest_op
from config.settings import current
from pipelines.launchpad import ops_only
from pipelines.schedules import TIMEZONE


@job(
    description="E-mail each owner their new and overdue exceptions (docs/desk.md, Digest).",
    config=ops_only(),
)
def desk_digest_job() -> None:
    desk_digest_op()


desk_schedules = [
    ScheduleDefinition(
        name="desk_digest_weekdays",
        job=desk_digest_job,
        cron_schedule="0 7 * * 1-5",
        execution_timezone=TIMEZONE,
        default_status=(
            DefaultScheduleStatus.RUNNING
            if current().desk_smtp_host
            else DefaultScheduleStatus.STOPPED
        ),
        description="Sends the desk's daily digest on weekdays at 07:00.",
    ),
]
