"""The posting window asset, job and schedule in Dagster (in-process, shared instance)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import DagsterInstance, Definitions, RunConfig, build_schedule_context

from assets.posting import POSTING_ASSET, PostingWindowConfig, posting_window
from connectors.erp.sql_interface import SqlInterfaceTarget
from pipelines.erp_resources import ErpResource, PostingPolicy
from pipelines.posting_jobs import posting_window_job, posting_window_weekdays
from pipelines.resources import StagingDatabase
from staging_models.db import dispose_all, staging_db
from tests.posting_helpers import erp_lines, stage_entries, with_master_data


@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def urls(tmp_path: Path) -> Iterator[tuple[str, str]]:
    staging = f"duckdb:///{tmp_path / 'staging.duckdb'}"
    erp = f"duckdb:///{tmp_path / 'erp.duckdb'}"
    target = SqlInterfaceTarget(erp)
    with_master_data(target)
    target.close()
    stage_entries(staging_db(staging), [{"entry_id": "TE1"}, {"entry_id": "TE2"}])
    yield staging, erp
    dispose_all()


def _defs(staging: str, erp: str, tmp_path: Path, hours: str = "") -> Definitions:
    return Definitions(
        assets=[posting_window],
        jobs=[posting_window_job],
        schedules=[posting_window_weekdays],
        resources={
            "staging": StagingDatabase(url=staging),
            "erp": ErpResource(kind="sql", url=erp),
            "posting_policy": PostingPolicy(
                posting_hours=hours, preview_dir=str(tmp_path / "previews")
            ),
        },
    )


def _posted(erp: str) -> int:
    target = SqlInterfaceTarget(erp)
    try:
        return len(erp_lines(target))
    finally:
        target.close()


def test_launchpad_default_is_a_dry_run_with_a_preview(urls, tmp_path, instance) -> None:
    staging, erp = urls
    job = _defs(staging, erp, tmp_path).resolve_job_def("posting_window_job")
    assert job.tags["posting_window"] == "1"
    result = job.execute_in_process(instance=instance)
    assert result.success
    md = result.asset_materializations_for_node(POSTING_ASSET)[0].metadata
    assert md["status"].value == "dry_run" and md["lines_sendable"].value == 2
    assert Path(md["preview_path"].value).exists()
    assert _posted(erp) == 0


def test_real_window_posts_and_reports(urls, tmp_path, instance) -> None:
    staging, erp = urls
    job = _defs(staging, erp, tmp_path).resolve_job_def("posting_window_job")
    result = job.execute_in_process(
        instance=instance,
        run_config=RunConfig(ops={POSTING_ASSET: PostingWindowConfig(dry_run=False, note="Nov")}),
    )
    assert result.success
    md = result.asset_materializations_for_node(POSTING_ASSET)[0].metadata
    assert md["confirmed"].value == 2 and md["hours_confirmed"].value == "15.0000"
    assert md["amount_confirmed_time_lines"].value == {"EUR": "1,500.00"}
    assert md["amount_confirmed_invoices"].value == {}
    assert _posted(erp) == 2


def test_refused_window_fails_the_run_with_the_reason(urls, tmp_path, instance) -> None:
    staging, erp = urls
    never = "sat 00:00-00:01 Pacific/Kiritimati"
    job = _defs(staging, erp, tmp_path, hours=never).resolve_job_def("posting_window_job")
    result = job.execute_in_process(
        instance=instance,
        run_config=RunConfig(ops={POSTING_ASSET: PostingWindowConfig(dry_run=False)}),
        raise_on_error=False,
    )
    assert not result.success
    failure = result.failure_data_for_node(POSTING_ASSET)
    assert "Posting is allowed only sat 00:00-00:01" in failure.user_failure_data.description
    assert _posted(erp) == 0


def test_schedule_is_off_by_default_and_posts_up_to_yesterday() -> None:
    from dagster import DefaultScheduleStatus

    assert posting_window_weekdays.default_status == DefaultScheduleStatus.STOPPED
    ctx = build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 24, 17, 30, tzinfo=UTC)
    )
    request = posting_window_weekdays.evaluate_tick(ctx).run_requests[0]
    cfg = request.run_config["ops"][POSTING_ASSET]["config"]
    assert cfg["dry_run"] is False and cfg["date_to"] == "2026-11-23"
    assert request.tags["posting_window"] == "1"


def test_erp_resource_hides_the_password() -> None:
    res = ErpResource(kind="sql", url="postgresql://erp@db.example/erp", password="s3cret")
    assert "s3cret" not in res.describe()
    with pytest.raises(ValueError, match="unknown ERP kind"):
        ErpResource(kind="sap").get_target()
