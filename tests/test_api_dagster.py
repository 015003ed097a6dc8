"""The API jobs in Dagster against the local Harvest replay: the nightly job pulls master data
and the recent range in full, the hourly job pulls changes, validation takes both; a wrong
token or an unconfigured vendor fails the run naming the variable to set."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterInstance, Definitions, EnvVar

from assets.api_ingestion import api_assets
from assets.validation import validation_assets, validation_checks
from config.settings import load
from pipelines.api_jobs import api_hourly_jobs, api_jobs, api_nightly_jobs
from resources.api_source import ApiSource
from resources.settings import API_VENDORS, api_source_resource
from resources.staging import StagingDatabase
from staging_models.db import StagingDB
from tests.support.vendor_api import FakeHarvest, serve

TOKEN = "hv-dagster-token"


def _defs(url: str, harvest: ApiSource) -> Definitions:
    resources: dict = {f"{v}_api": ApiSource(vendor=v) for v in API_VENDORS}
    resources["harvest_api"] = harvest
    return Definitions(
        assets=[*api_assets, *validation_assets],
        asset_checks=validation_checks,
        jobs=api_jobs,
        resources={"staging": StagingDatabase(url=url), **resources},
    )


def _harvest(fake: FakeHarvest, token: str = TOKEN) -> ApiSource:
    return ApiSource(
        vendor="harvest",
        token=token,
        url=f"{fake.url}/v2",
        account_id=fake.account_id,
        user_agent="stagepost tests",
        default_currency="EUR",
        default_legal_entity="DE01",
        initial_days=3650,  # the fixtures are from November 2026
        full_pull_days=3650,
        max_delete_share="0.5",
    )


def test_nightly_then_hourly_land_and_validate(
    duck_db: StagingDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAGEPOST_DATA_DIR", str(tmp_path / "data"))
    with serve(FakeHarvest(TOKEN)) as fake, DagsterInstance.ephemeral() as instance:
        defs = _defs(duck_db.url, _harvest(fake))
        nightly = defs.resolve_job_def(api_nightly_jobs["harvest"].name)
        result = nightly.execute_in_process(instance=instance)
        assert result.success
        md = {
            str(m.asset_key.path[-1]): m.metadata
            for m in result.asset_materializations_for_node("api_harvest_time_entries")
        }["api_harvest_time_entries"]
        assert md["time_entries.records"].value == 5
        assert md["time_entries.full_export"].value["status"] == "complete"
        states = duck_db.query_df(
            "SELECT state, count(*) AS n FROM stg_time_entries WHERE is_current GROUP BY state"
        )
        assert dict(zip(states.state, states.n, strict=True)) == {"valid": 4, "not_postable": 1}

        fake.edit(636708427, is_closed=True, updated_at="2026-12-05T00:00:00Z")  # approved now
        hourly = defs.resolve_job_def(api_hourly_jobs["harvest"].name)
        assert hourly.execute_in_process(instance=instance).success
        valid = duck_db.scalar(
            "SELECT count(*) FROM stg_time_entries WHERE is_current AND state = 'valid'"
        )
        assert valid == 5
    parquet = sorted(
        p.name for p in (tmp_path / "data" / "api_pulls" / "harvest").glob("*.parquet")
    )
    assert any(n.startswith("time_entries_full_api_harvest_") for n in parquet)
    assert any(n.startswith("projects_api_harvest_") for n in parquet)


def test_wrong_token_and_missing_settings_fail_naming_the_variable(
    duck_db: StagingDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAGEPOST_DATA_DIR", str(tmp_path / "data"))
    with serve(FakeHarvest(TOKEN)) as fake, DagsterInstance.ephemeral() as instance:
        defs = _defs(duck_db.url, _harvest(fake, token="revoked"))
        run = defs.resolve_job_def(api_hourly_jobs["harvest"].name).execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert not run.success
        (failure,) = [
            e
            for e in run.all_events
            if e.is_step_failure and e.step_key == "api_harvest_time_entries"
        ]
        text = failure.step_failure_data.error.message
        assert "401" in text and "STAGEPOST_HARVEST_TOKEN" in text and "revoked" not in text
        run = defs.resolve_job_def(api_hourly_jobs["toggl"].name).execute_in_process(
            instance=instance, raise_on_error=False
        )
        (failure,) = [
            e
            for e in run.all_events
            if e.is_step_failure and e.step_key == "api_toggl_time_entries"
        ]
        assert "set STAGEPOST_TOGGL_TOKEN" in failure.step_failure_data.error.message
    assert duck_db.scalar("SELECT count(*) FROM loads") == 0


def test_api_tokens_reach_the_resources_as_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    for v in API_VENDORS:
        monkeypatch.setenv(f"STAGEPOST_{v.upper()}_TOKEN", "hunter2")
    assert "hunter2" not in repr(load())
    for v in API_VENDORS:
        r = api_source_resource(v)
        assert r.token == EnvVar(f"STAGEPOST_{v.upper()}_TOKEN")
        assert "hunter2" not in repr(r)
