"""The daily digest, received by a real SMTP server the test starts (fixture `smtp`,
`tests/support/smtp_server.py`:
Debian's aiosmtpd writing a Maildir)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from reconciliation.report_files import desk_base_url
from staging_models import desk_digest
from staging_models.db import StagingDB
from tests.support.desk_world import NOW, DeskWorld, build
from tests.support.smtp_server import messages


@pytest.fixture
def world(duck_db: StagingDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DeskWorld:
    w = build(duck_db, tmp_path, monkeypatch)
    monkeypatch.setenv("STAGEPOST_DESK_OWNER_EMAILS", '{"finance-ops": "fo@example.com"}')
    monkeypatch.setenv("STAGEPOST_DESK_BASE_URL", "https://desk.example.com")
    return w


def test_digest_of_new_exceptions_per_owner(world: DeskWorld, smtp: Path) -> None:
    sent, missing = desk_digest.send(world.db, desk_base_url(), NOW + timedelta(hours=1))
    assert (sent, missing) == (1, ["hr-data"])  # hr-data has no address: reported
    (mail,) = messages(smtp)
    assert mail["To"] == "fo@example.com" and mail["From"] == "stagepost@example.com"
    assert mail["Subject"] == "stagepost: 4 new, 0 overdue exceptions for finance-ops"
    body = mail.get_payload(decode=True).decode()
    assert "New since yesterday: 4" in body and "Overdue: 0" in body
    assert "time_entries TE2: TE_PROJECT_CLOSED" in body and "(no key): TE_KEY_MISSING" in body
    assert "https://desk.example.com/item?ds=time_entries&gk=TE2" in body
    assert "TE3" not in body  # hr-data's


def test_digest_of_overdue_exceptions(world: DeskWorld, smtp: Path, monkeypatch) -> None:
    monkeypatch.setenv(
        "STAGEPOST_DESK_OWNER_EMAILS",
        '{"finance-ops": "fo@example.com", "hr-data": "hr@example.com"}',
    )
    sent, missing = desk_digest.send(world.db, desk_base_url(), NOW + timedelta(days=10))
    assert (sent, missing) == (2, [])
    fo, hr = messages(smtp)
    assert fo["Subject"] == "stagepost: 0 new, 4 overdue exceptions for finance-ops"
    assert hr["Subject"] == "stagepost: 0 new, 1 overdue exceptions for hr-data"
    assert (
        "time_entries TE3: TE_UNKNOWN_EMPLOYEE (due 2026-11-24)"
        in hr.get_payload(decode=True).decode()
    )


def test_digest_job_sends_on_schedule(world: DeskWorld, smtp: Path, monkeypatch) -> None:
    """The scheduled job (weekdays 07:00) runs in-process and the mail arrives; all of the
    world's exceptions are past their November due dates by the wall clock."""
    from dagster import build_schedule_context

    from pipelines.definitions import defs
    from pipelines.desk_jobs import desk_digest_job
    from resources.staging import StagingDatabase

    monkeypatch.setenv(
        "STAGEPOST_DESK_OWNER_EMAILS",
        '{"finance-ops": "fo@example.com", "hr-data": "hr@example.com"}',
    )
    schedule = defs.get_repository_def().get_schedule_def("desk_digest_weekdays")
    assert schedule.cron_schedule == "0 7 * * 1-5" and schedule.job_name == "desk_digest_job"
    (request,) = schedule.evaluate_tick(build_schedule_context()).run_requests
    result = desk_digest_job.execute_in_process(
        run_config=request.run_config, resources={"staging": StagingDatabase(url=world.db.url)}
    )
    assert result.success and result.output_for_node("desk_digest_op") == 2
    fo, hr = messages(smtp)
    assert fo["To"] == "fo@example.com" and "4 overdue" in fo["Subject"]
    assert "Overdue: 1" in hr.get_payload(decode=True).decode()


def test_digest_job_skips_without_smtp_host(world: DeskWorld, monkeypatch) -> None:
    from pipelines.desk_jobs import desk_digest_job
    from resources.staging import StagingDatabase

    monkeypatch.delenv("STAGEPOST_DESK_SMTP_HOST", raising=False)
    result = desk_digest_job.execute_in_process(
        resources={"staging": StagingDatabase(url=world.db.url)}
    )
    assert result.success and result.output_for_node("desk_digest_op") == 0
    (out,) = [e for e in result.all_events if e.is_successful_output]
    assert out.step_output_data.metadata["skipped"].value == "no SMTP host"
