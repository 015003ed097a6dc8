"""`dagster dev` as the README starts it: the UI loads the code location, shows the assets and
schedules, and a run launched through its GraphQL API (the Launchpad's path) lands the inbox."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from assets.ingestion import landed_asset_key
from assets.validation import validated_time_entries
from pipelines.jobs import ingest_time_entries_job
from pipelines.operator_jobs import ignore_quarantined_job
from pipelines.posting_jobs import posting_window_job
from pipelines.schedules import master_data_nightly, time_entries_hourly
from tests.support.csvtools import te, write_csv
from tests.support.dagster_ui import dagster_ui, gql

ROOT = Path(__file__).resolve().parents[1]


# What the Launchpad's editor is built from: the root config type and its validation.
LAUNCHPAD_SCHEMA = """
query($selector: PipelineSelector!, $config: RunConfigData) {
  runConfigSchemaOrError(selector: $selector) {
    __typename
    ... on RunConfigSchema {
      rootConfigType {
        ... on CompositeConfigType {
          fields { name configType { ... on CompositeConfigType { fields { name } } } }
        }
      }
      isRunConfigValid(runConfigData: $config) { __typename }
    }
  }
}"""


@pytest.mark.slow
def test_dagster_dev_shows_assets_schedules_and_runs_ingestion(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    data = tmp_path / "data"
    write_csv(data / "inbox" / "time_entries_ui.csv", "time_entries", [te(), te(entry_id="TE2")])
    env = {"STAGEPOST_DATA_DIR": str(data)}
    with dagster_ui(home, env, tmp_path / "dagster_dev.log", timeout=120, cli="dagster") as ui:
        repo = ui.repo
        crons = {s["name"]: s["cronSchedule"] for s in repo["schedules"]}
        assert crons[time_entries_hourly.name] == "15 * * * *"
        assert crons[master_data_nightly.name] == "0 2 * * *"
        assets = {"/".join(a["assetKey"]["path"]) for a in repo["assetNodes"]}
        assert {
            landed_asset_key("time_entries"),
            validated_time_entries.key.to_user_string(),
        } <= assets
        # The UI gives a job a Launchpad tab only when it is not an asset job (Dagster 1.13,
        # PipelineNav: hasLaunchpad = !isAssetJob): the README's clicks depend on this.
        asset_job = {p["name"]: p["isAssetJob"] for p in repo["pipelines"]}
        assert asset_job[posting_window_job.name] is True  # ▾ beside Materialize → Open launchpad
        assert asset_job[ignore_quarantined_job.name] is False  # its own Launchpad tab

        # The Launchpads take the ops' fields only: no resource setting is offered or accepted.
        for job, resource in (
            (posting_window_job.name, {"erp": {"config": {"url": "http://elsewhere:8000/"}}}),
            (ingest_time_entries_job.name, {"psa_source": {"config": {"host": "sftp.x"}}}),
        ):
            selector = {
                "repositoryLocationName": repo["location"]["name"],
                "repositoryName": repo["name"],
                "pipelineName": job,
            }
            schema = gql(
                ui.port, LAUNCHPAD_SCHEMA, {"selector": selector, "config": {"resources": resource}}
            )["runConfigSchemaOrError"]
            sections = {f["name"]: f["configType"] for f in schema["rootConfigType"]["fields"]}
            assert sections["resources"]["fields"] == [], job
            assert schema["isRunConfigValid"]["__typename"] == "RunConfigValidationInvalid", job
        window = {f["name"] for f in sections_of(ui.port, repo, posting_window_job.name)}
        assert {"posting_window"} == window

        run_id = ui.launch(ingest_time_entries_job.name)
        status = ui.wait([run_id], timeout=180)[run_id]["status"]
        assert status == "SUCCESS", ui.log.read_text()[-3000:]
    assert (data / "inbox" / "archive" / "time_entries_ui.csv").exists()
    import duckdb

    con = duckdb.connect(str(data / "staging.duckdb"), read_only=True)
    assert con.execute("SELECT COUNT(*) FROM stg_time_entries").fetchone()[0] == 2
    con.close()


def sections_of(port: int, repo: dict, job: str) -> list[dict]:
    """The posting window job's Launchpad `ops:` fields, through GraphQL."""
    selector = {
        "repositoryLocationName": repo["location"]["name"],
        "repositoryName": repo["name"],
        "pipelineName": job,
    }
    schema = gql(port, LAUNCHPAD_SCHEMA, {"selector": selector, "config": {}})
    fields = schema["runConfigSchemaOrError"]["rootConfigType"]["fields"]
    return next(f for f in fields if f["name"] == "ops")["configType"]["fields"]
