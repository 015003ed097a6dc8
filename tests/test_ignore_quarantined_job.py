"""`ignore_quarantined_job` (#15): a green run means rows were ignored. A misspelt dataset is
refused at launch (the Launchpad names the known ones), an empty operator or reason fails the
run before anything changes, and a decision that matches no open row fails instead of
succeeding having ignored nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterInvalidConfigError, Definitions, RunConfig

from assets.operations import IgnoreQuarantinedConfig
from connectors.sources.canonical import DATASETS
from pipelines.operator_jobs import ignore_quarantined_job
from resources.staging import StagingDatabase
from staging_models.db import StagingDB
from tests.support.staging_helpers import World, entry

OP = "ignore_quarantined_rows"


@pytest.fixture
def world(duck_db: StagingDB, tmp_path: Path) -> World:
    w = World(duck_db, tmp_path).master()
    w.land("time_entries", [entry(entry_id="IGN", project_code="P404"), entry(entry_id="KEEP")])
    w.validate()
    return w


def _run(world: World, instance: DagsterInstance, run_config: dict | RunConfig):
    defs = Definitions(
        jobs=[ignore_quarantined_job], resources={"staging": StagingDatabase(url=world.db.url)}
    )
    job = defs.resolve_job_def(ignore_quarantined_job.name)
    return job.execute_in_process(run_config=run_config, instance=instance, raise_on_error=False)


def _config(**kw) -> dict:
    given = {"dataset": "time_entries", "reason": "test project", "operator": "ana", **kw}
    return {"ops": {OP: {"config": given}}}


def _status(world: World, key: str) -> str:
    return world.db.scalar("SELECT status FROM quarantine WHERE row_key = :k", {"k": key})


def _failure(result) -> str:
    step = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert step, "the run did not fail"
    return step[0].event_specific_data.error.message


def test_a_misspelt_dataset_is_refused_at_launch(world: World) -> None:
    with DagsterInstance.ephemeral() as instance:
        with pytest.raises(DagsterInvalidConfigError, match="dataset"):
            _run(world, instance, _config(dataset="time_entires", row_keys=["IGN"]))
    assert _status(world, "IGN") == "open"
    # The Launchpad offers the known datasets (an enum) and its description names them.
    job = ignore_quarantined_job
    ops = job.run_config_schema.config_type.fields["ops"].config_type.fields[OP]
    dataset = ops.config_type.fields["config"].config_type.fields["dataset"]
    assert [v.config_value for v in dataset.config_type.enum_values] == list(DATASETS)
    assert all(name in dataset.description for name in DATASETS)


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"operator": "  "}, "operator is empty"),
        ({"reason": ""}, "reason is empty"),
        ({"row_keys": [" "]}, "name the rows to ignore"),
    ],
)
def test_an_empty_operator_reason_or_selection_fails_and_changes_nothing(
    world: World, given: dict, says: str
) -> None:
    with DagsterInstance.ephemeral() as instance:
        result = _run(world, instance, _config(**{"row_keys": ["IGN"], **given}))
    assert not result.success
    assert says in _failure(result)
    assert _status(world, "IGN") == "open"
    assert world.db.scalar("SELECT COUNT(*) FROM quarantine_events WHERE event = 'ignored'") == 0


def test_a_decision_matching_no_open_row_fails(world: World) -> None:
    with DagsterInstance.ephemeral() as instance:
        result = _run(world, instance, _config(row_keys=["NOPE"]))
        assert not result.success
        assert "no open quarantined time_entries row matches row keys NOPE" in _failure(result)
        result = _run(world, instance, _config(rule_code="TE_HOURS_OVER_24"))
        assert "matches rule TE_HOURS_OVER_24: nothing was ignored" in _failure(result)


def test_a_valid_decision_ignores_the_rows_and_records_who(world: World) -> None:
    cfg = IgnoreQuarantinedConfig(
        dataset="time_entries", reason=" test project ", operator=" ana ", row_keys=["IGN"]
    )
    with DagsterInstance.ephemeral() as instance:
        result = _run(world, instance, RunConfig(ops={OP: cfg}))
        assert result.success
        assert result.output_for_node(OP) == 1
        again = _run(world, instance, RunConfig(ops={OP: cfg}))
    assert not again.success  # ignored already: no open row matches now
    row = world.db.query_df("SELECT status, status_by, status_reason FROM quarantine").iloc[0]
    assert row["status"] == "ignored" and row["status_reason"] == "test project"
    assert row["status_by"].startswith(f"ana (run {result.run_id}")
