"""Billing holds and status feedback in Dagster (in-process): the window's metadata lists held
invoices; `status_feedback_job` delivers (changed only, `full_resend` from the Launchpad);
the sensors start it after a posting window; `replay_dead_letters_job` pushes dead letters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from dagster import DagsterInstance, Definitions, RunConfig, build_sensor_context

from assets.feedback import (
    STATUS_FEEDBACK,
    ReplayDeadLettersConfig,
    StatusFeedbackConfig,
    status_feedback,
)
from assets.posting import POSTING_ASSET, PostingWindowConfig, posting_window
from connectors.erp.sql_interface import SqlInterfaceTarget
from pipelines.feedback_jobs import (
    feedback_after_posting,
    feedback_jobs,
    feedback_sensors,
    replay_dead_letters_job,
    status_feedback_job,
)
from pipelines.posting_jobs import posting_window_job
from resources.erp import ErpResource, PostingPolicy
from resources.feedback import OutboundDelivery
from resources.staging import StagingDatabase
from staging_models.db import dispose_all, staging_db
from tests.support.feedback_helpers import Receiver, bill_entries, set_project
from tests.support.posting_helpers import stage_entries, stage_invoice, with_master_data


@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[str, str]]:
    staging = f"duckdb:///{tmp_path / 'staging.duckdb'}"
    erp = f"duckdb:///{tmp_path / 'erp.duckdb'}"
    target = SqlInterfaceTarget(erp)
    with_master_data(target)
    target.close()
    db = staging_db(staging)
    set_project(db, "P1", hold=True, reason="Disputed scope", since=date(2026, 12, 1))
    stage_entries(db, [{"entry_id": "TE1"}, {"entry_id": "TE2"}])
    stage_invoice(db, "I1", [{"line_no": 1}])
    bill_entries(db, "I1", "TE1;TE2")
    yield staging, erp
    dispose_all()


def _defs(staging: str, erp: str, tmp_path: Path, webhook: str | None = None) -> Definitions:
    return Definitions(
        assets=[posting_window, status_feedback],
        jobs=[posting_window_job, *feedback_jobs],
        sensors=feedback_sensors,
        resources={
            "staging": StagingDatabase(url=staging),
            "erp": ErpResource(kind="sql", url=erp),
            "posting_policy": PostingPolicy(preview_dir=str(tmp_path / "previews")),
            "outbound": OutboundDelivery(
                folder=str(tmp_path / "feedback"),
                webhook_url=webhook,
                webhook_attempts=1,
            ),
        },
    )


def _feedback(defs: Definitions, instance, **config):
    job = defs.resolve_job_def(status_feedback_job.name)
    result = job.execute_in_process(
        instance=instance,
        run_config=RunConfig(ops={STATUS_FEEDBACK: StatusFeedbackConfig(**config)}),
    )
    assert result.success
    return result.asset_materializations_for_node(STATUS_FEEDBACK)[0].metadata


def test_window_then_feedback_jobs_and_sensor(world, tmp_path, instance) -> None:
    staging, erp = world
    defs = _defs(staging, erp, tmp_path)
    window = defs.resolve_job_def(posting_window_job.name).execute_in_process(
        instance=instance,
        run_config=RunConfig(
            ops={POSTING_ASSET: PostingWindowConfig(dry_run=False, operator="ana")}
        ),
    )
    assert window.success
    md = window.asset_materializations_for_node(POSTING_ASSET)[0].metadata
    assert "Disputed scope" in md["held_invoices"].value and md["held"].value == 1

    # The sensor asks for a feedback run after the window's materialization.
    context = build_sensor_context(instance=instance, definitions=defs)
    requests = list(feedback_after_posting(context) or [])
    assert len(requests) == 1 and requests[0].run_key.startswith("feedback_after_posting-")

    md = _feedback(defs, instance)
    assert md["records"].value == 3  # two entries, one invoice
    folder = tmp_path / "feedback"
    (invoice,) = [
        json.loads(x) for x in (folder / "invoice_status_00000001.jsonl").read_text().splitlines()
    ]
    assert invoice["status"] == "held"
    assert invoice["hold_reason"] == "Billing hold on project P1 since 2026-12-01: Disputed scope"
    assert _feedback(defs, instance)["records"].value == 0  # nothing changed
    assert _feedback(defs, instance, full_resend=True)["records"].value == 3
    assert json.loads((folder / "time_entry_status_00000002.manifest.json").read_text())[
        "full_resend"
    ]


def test_replay_job_pushes_dead_letters(world, tmp_path, instance) -> None:
    staging, erp = world
    receiver = Receiver(fail_next=10**6).start()
    try:
        defs = _defs(staging, erp, tmp_path, webhook=receiver.url)
        md = _feedback(defs, instance)
        assert md["dead_letters"].value == 2
        replay = defs.resolve_job_def(replay_dead_letters_job.name)
        config = RunConfig(ops={"replay_dead_letters_op": ReplayDeadLettersConfig()})
        failed = replay.execute_in_process(
            instance=instance, run_config=config, raise_on_error=False
        )
        assert not failed.success  # still down: the run says so
        receiver.fail_next = 0
        assert replay.execute_in_process(instance=instance, run_config=config).success
        assert len(receiver.accepted) == 2
        dead = staging_db(staging).query_df("SELECT status FROM outbound_dead_letters")
        assert set(dead["status"]) == {"replayed"}
    finally:
        receiver.stop()
