"""Schedules: time entries hourly, master data and invoice proposals nightly."""

from __future__ import annotations

from dagster import DefaultScheduleStatus, ScheduleDefinition

from config.settings import current
from pipelines.jobs import ingest_nightly_job, ingest_time_entries_job

TIMEZONE = current().timezone

time_entries_hourly = ScheduleDefinition(
    name="time_entries_hourly",
    job=ingest_time_entries_job,
    cron_schedule="15 * * * *",
    execution_timezone=TIMEZONE,
    default_status=DefaultScheduleStatus.STOPPED,
    description="Lands new time-entry exports at a quarter past every hour.",
)

master_data_nightly = ScheduleDefinition(
    name="master_data_nightly",
    job=ingest_nightly_job,
    cron_schedule="0 2 * * *",
    execution_timezone=TIMEZONE,
    default_status=DefaultScheduleStatus.STOPPED,
    description="Lands employees, projects, tasks, rate cards and invoice proposals at 02:00.",
)

schedules = [time_entries_hourly, master_data_nightly]
