"""The posting window asset, job and schedule in Dagster (in-process, shared instance)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    Definitions,
    RunConfig,
    build_schedule_context,
    materialize,
)

from assets.posting import (
    ENTITY_TAG,
    POSTING_ASSET,
    WINDOW_TAG,
    PostingWindowConfig,
    entity_tag,
    posting_window,
)
from connectors.erp.sql_interface import SqlInterfaceTarget
from pipelines.posting_jobs import SCHEDULE_OPERATOR, posting_window_job, posting_window_weekdays
from resources.erp import ErpResource, PostingPolicy
from resources.staging import StagingDatabase
from staging_models.db import dispose_all, staging_db
from tests.support.posting_helpers import erp_lines, stage_entries, with_master_data


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


def _config(**kw) -> RunConfig:
    return RunConfig(ops={POSTING_ASSET: PostingWindowConfig(**kw)})


def _windows(staging: str):
    return staging_db(staging).query_df(
        "SELECT status, launched_by, note, override_reason, message FROM posting_windows "
        "ORDER BY started_at"
    )


def _refusal(result):
    """The step failure of a refused window: its description, metadata and error info."""
    assert not result.success
    (event,) = result.get_step_failure_events()
    return event.step_failure_data


def test_launchpad_default_is_a_dry_run_with_a_preview(urls, tmp_path, instance) -> None:
    staging, erp = urls
    job = _defs(staging, erp, tmp_path).resolve_job_def(posting_window_job.name)
    assert job.tags[ENTITY_TAG] == "all"
    result = job.execute_in_process(instance=instance, run_config=_config(operator="ana"))
    assert result.success
    md = result.asset_materializations_for_node(POSTING_ASSET)[0].metadata
    assert md["status"].value == "dry_run" and md["lines_sendable"].value == 2
    assert Path(md["preview_path"].value).exists()
    assert _posted(erp) == 0


def test_real_window_posts_and_reports(urls, tmp_path, instance) -> None:
    staging, erp = urls
    job = _defs(staging, erp, tmp_path).resolve_job_def(posting_window_job.name)
    result = job.execute_in_process(
        instance=instance,
        run_config=_config(dry_run=False, note="Nov", operator="ana"),
    )
    assert result.success
    md = result.asset_materializations_for_node(POSTING_ASSET)[0].metadata
    assert md["confirmed"].value == 2 and md["hours_confirmed"].value == "15.0000"
    assert md["amount_confirmed_time_lines"].value == {"EUR": "1,500.00"}
    assert md["amount_confirmed_invoices"].value == {}
    assert _posted(erp) == 2
    # A real window writes no preview workbook unless asked for (its dry run showed the plan).
    assert "preview_path" not in md
    assert not list((tmp_path / "previews").glob("*.xlsx"))


def test_real_window_writes_a_preview_when_asked(urls, tmp_path, instance) -> None:
    staging, erp = urls
    job = _defs(staging, erp, tmp_path).resolve_job_def(posting_window_job.name)
    result = job.execute_in_process(
        instance=instance, run_config=_config(dry_run=False, operator="ana", preview=True)
    )
    assert result.success
    md = result.asset_materializations_for_node(POSTING_ASSET)[0].metadata
    assert md["confirmed"].value == 2
    assert Path(md["preview_path"].value).exists()


def test_refused_window_fails_the_run_with_the_reason(urls, tmp_path, instance) -> None:
    staging, erp = urls
    never = "sat 00:00-00:01 Pacific/Kiritimati"
    job = _defs(staging, erp, tmp_path, hours=never).resolve_job_def(posting_window_job.name)
    result = job.execute_in_process(
        instance=instance,
        run_config=_config(dry_run=False, operator="ana", note="month end"),
        raise_on_error=False,
    )
    failure = _refusal(result)
    assert failure.user_failure_data.description.startswith("Posting is allowed only sat 00:00")
    assert failure.user_failure_data.metadata["operator"].value == "ana"
    assert failure.user_failure_data.metadata["note"].value == "month end"
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
    assert cfg["operator"] == SCHEDULE_OPERATOR
    assert request.tags[ENTITY_TAG] == "all" and request.tags[WINDOW_TAG] == "post"


def test_erp_resource_hides_the_password() -> None:
    res = ErpResource(kind="sql", url="postgresql://erp@db.example/erp", password="s3cret")
    assert "s3cret" not in res.describe()
    with pytest.raises(ValueError, match="unknown ERP kind"):
        ErpResource(kind="sap").get_target()


# -- who asked, and why (issue 12 item 6) -------------------------------------------------------


def test_window_records_note_override_and_operator_as_given(urls, tmp_path, instance) -> None:
    staging, erp = urls
    job = _defs(staging, erp, tmp_path).resolve_job_def(posting_window_job.name)
    given = {"note": "November close, asked by Ben", "override_reason": "auditor waiting"}
    result = job.execute_in_process(
        instance=instance, run_config=_config(dry_run=False, operator="ana@finance", **given)
    )
    assert result.success
    row = _windows(staging).iloc[-1]
    assert row["launched_by"] == "ana@finance"
    assert row["note"] == given["note"] and row["override_reason"] == given["override_reason"]
    assert row["message"].startswith("Posted 2 documents")
    md = result.asset_materializations_for_node(POSTING_ASSET)[0].metadata
    assert md["operator"].value == "ana@finance"
    assert md["note"].value == given["note"]
    assert md["override_reason"].value == given["override_reason"]


def test_the_runs_user_tag_names_who_launched(urls, tmp_path, instance) -> None:
    """Dagster+ tags a run with the launching user's e-mail (`user`): it wins over the field."""
    staging, erp = urls
    job = _defs(staging, erp, tmp_path).resolve_job_def(posting_window_job.name)
    result = job.execute_in_process(
        instance=instance, run_config=_config(operator=""), tags={"user": "ben@example.com"}
    )
    assert result.success
    assert _windows(staging).iloc[-1]["launched_by"] == "ben@example.com"


def test_no_operator_and_no_user_tag_is_refused(urls, tmp_path, instance) -> None:
    staging, erp = urls
    job = _defs(staging, erp, tmp_path).resolve_job_def(posting_window_job.name)
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    failure = _refusal(result)
    assert "Fill in `operator`" in failure.user_failure_data.description
    assert failure.error.stack == []
    assert _windows(staging).empty


def test_refused_window_keeps_the_note_and_records_the_reason(urls, tmp_path, instance) -> None:
    staging, erp = urls
    never = "sat 00:00-00:01 Pacific/Kiritimati"
    job = _defs(staging, erp, tmp_path, hours=never).resolve_job_def(posting_window_job.name)
    job.execute_in_process(
        instance=instance,
        run_config=_config(dry_run=False, operator="ana", note="please post"),
        raise_on_error=False,
    )
    row = _windows(staging).iloc[-1]
    assert (row["status"], row["launched_by"], row["note"]) == ("refused", "ana", "please post")
    assert row["message"].startswith("Posting is allowed only sat 00:00-00:01")


# -- refusals are not crashes (issue 12 item 9) -------------------------------------------------


def _assert_no_stack(result, instance: DagsterInstance) -> None:
    """Neither the step failure nor the run failure carries a Python stack trace."""
    failure = _refusal(result)
    assert failure.error.stack == [] and "Traceback" not in failure.error.to_string()
    assert "File " not in failure.error.to_string()
    (run_failure,) = instance.get_records_for_run(
        result.run_id, of_type=DagsterEventType.RUN_FAILURE
    ).records
    error = run_failure.event_log_entry.dagster_event.event_specific_data.error
    assert error is None or error.stack == []


def test_outside_posting_hours_is_a_failure_without_a_traceback(urls, tmp_path, instance) -> None:
    staging, erp = urls
    never = "sat 00:00-00:01 Pacific/Kiritimati"
    job = _defs(staging, erp, tmp_path, hours=never).resolve_job_def(posting_window_job.name)
    result = job.execute_in_process(
        instance=instance, run_config=_config(dry_run=False, operator="ana"), raise_on_error=False
    )
    _assert_no_stack(result, instance)
    failure = _refusal(result)
    assert failure.error.message.startswith("Posting is allowed only")
    assert failure.error.cls_name == "PostingHoursClosed"


def test_max_lines_is_a_failure_without_a_traceback(urls, tmp_path, instance) -> None:
    staging, erp = urls
    job = _defs(staging, erp, tmp_path).resolve_job_def(posting_window_job.name)
    result = job.execute_in_process(
        instance=instance,
        run_config=_config(dry_run=False, operator="ana", max_lines=1),
        raise_on_error=False,
    )
    _assert_no_stack(result, instance)
    assert "more than max_lines 1" in _refusal(result).user_failure_data.description
    assert _posted(erp) == 0


def test_unsettled_validation_is_a_failure_without_a_traceback(urls, tmp_path, instance) -> None:
    staging, erp = urls
    stage_entries(staging_db(staging), [{"entry_id": "TE3", "state": "landed"}])
    job = _defs(staging, erp, tmp_path).resolve_job_def(posting_window_job.name)
    result = job.execute_in_process(
        instance=instance, run_config=_config(dry_run=False, operator="ana"), raise_on_error=False
    )
    _assert_no_stack(result, instance)
    failure = _refusal(result)
    assert "Validation has not settled every row of time_entries" in failure.error.message
    assert "conservation" in failure.user_failure_data.metadata
    assert _posted(erp) == 0


def test_materializing_outside_the_job_posts_nothing_and_says_how(urls, tmp_path, instance) -> None:
    """The asset page's Materialize runs the asset in an ad-hoc asset job, without the
    `stagepost/legal_entity` tag the run queue limits: the asset refuses there."""
    staging, erp = urls
    result = materialize(
        [posting_window],
        instance=instance,
        resources=_defs(staging, erp, tmp_path).resources,
        run_config=_config(dry_run=False, operator="ana"),
        raise_on_error=False,
    )
    _assert_no_stack(result, instance)
    description = _refusal(result).user_failure_data.description
    assert "runs only in posting_window_job" in description
    assert (
        "Jobs -> posting_window_job -> the arrow beside Materialize -> Open launchpad"
        in description
    )
    assert _posted(erp) == 0 and _windows(staging).empty


@pytest.mark.parametrize(("dry_run", "kind"), [(True, "dry_run"), (False, "post")])
def test_dry_runs_and_real_windows_are_tagged(urls, tmp_path, instance, dry_run, kind) -> None:
    staging, erp = urls
    job = _defs(staging, erp, tmp_path).resolve_job_def(posting_window_job.name)
    result = job.execute_in_process(
        instance=instance, run_config=_config(dry_run=dry_run, operator="ana")
    )
    assert result.success
    assert instance.get_run_by_id(result.run_id).tags[WINDOW_TAG] == kind


def test_entity_tag_names_the_one_entity_or_all() -> None:
    assert entity_tag(["DE01"]) == "DE01"
    assert entity_tag([]) == entity_tag(["DE01", "US01"]) == "all"


def test_a_run_tagged_with_an_entity_posts_only_that_entity(urls, tmp_path, instance) -> None:
    """The queue runs one window per tag value: a run tagged DE01 may post DE01 (or be left at
    the default `all`), never another scope."""
    staging, erp = urls
    job = _defs(staging, erp, tmp_path).resolve_job_def(posting_window_job.name)
    wrong = job.execute_in_process(
        instance=instance,
        run_config=_config(dry_run=False, operator="ana", legal_entities=["US01"]),
        tags={ENTITY_TAG: "DE01"},
        raise_on_error=False,
    )
    _assert_no_stack(wrong, instance)
    message = _refusal(wrong).user_failure_data.description
    assert "tagged stagepost/legal_entity=DE01 but its window covers US01" in message
    assert _posted(erp) == 0 and _windows(staging).empty
    right = job.execute_in_process(
        instance=instance,
        run_config=_config(dry_run=False, operator="ana", legal_entities=["DE01"]),
        tags={ENTITY_TAG: "DE01"},
    )
    assert right.success and _posted(erp) == 2
