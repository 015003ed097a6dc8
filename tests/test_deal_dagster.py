"""The project set-up in Dagster: `deal_setup_job` lands deals and templates, validates them and
sets them up in the SQL-interface ERP, with the PSA import file in the configured folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from dagster import DagsterInstance

from pipelines.deal_jobs import deal_setup_job
from pipelines.jobs import main_job
from staging_models.db import dispose_all, staging_db
from tests.support.csvtools import write_csv
from tests.support.dagster_defs import local_definitions
from tests.support.deal_world import TEMPLATES, deal
from tests.support.staging_helpers import EMPLOYEES, PROJECTS


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    inbox = tmp_path / "inbox"
    write_csv(inbox / "employees_1.csv", "employees", EMPLOYEES)
    write_csv(inbox / "projects_1.csv", "projects", PROJECTS)
    write_csv(inbox / "project_templates_1.csv", "project_templates", TEMPLATES)
    write_csv(
        inbox / "crm_deals_1.csv",
        "crm_deals",
        [deal(), deal(deal_id="D101", currency="EUR"), deal(deal_id="D102", stage="lost")],
    )
    outbound = tmp_path / "outbound"
    monkeypatch.setenv("STAGEPOST_DEAL_OUTBOUND_DIR", str(outbound))
    staging = f"duckdb:///{tmp_path / 'staging.duckdb'}"
    erp = f"duckdb:///{tmp_path / 'erp.duckdb'}"
    defs = local_definitions(tmp_path, inbox, staging, erp)
    yield {"defs": defs, "staging": staging, "erp": erp, "outbound": outbound}
    dispose_all()


def test_deal_setup_job_sets_up_won_deals_and_writes_the_psa_file(world: dict) -> None:
    with DagsterInstance.ephemeral() as instance:
        assert (
            world["defs"]
            .resolve_job_def(main_job.name)
            .execute_in_process(instance=instance)
            .success
        )
        run = (
            world["defs"].resolve_job_def(deal_setup_job.name).execute_in_process(instance=instance)
        )
        assert run.success
        md = {
            m.asset_key.to_user_string(): m.metadata
            for m in run.asset_materializations_for_node("deal_setup")
        }["deal_setup"]
        assert md["deals_set_up"].value == ["D100"]
        assert md["deals_quarantined"].value == ["D101"]
        assert sorted(p.name.split("_deals_")[0] for p in world["outbound"].iterdir()) == [
            "project_tasks",
            "projects",
        ]
        again = (
            world["defs"].resolve_job_def(deal_setup_job.name).execute_in_process(instance=instance)
        )
        assert again.success
    dispose_all()
    status = staging_db(world["staging"]).query_df(
        "SELECT deal_id, status, erp_project_id FROM deal_setups ORDER BY deal_id"
    )
    assert status.to_dict("records") == [
        {"deal_id": "D100", "status": "set_up", "erp_project_id": "D100"},
        {"deal_id": "D101", "status": "quarantined", "erp_project_id": None},
    ]
    dispose_all()
    engine = sa.create_engine(world["erp"])
    with engine.connect() as conn:
        projects = pd.read_sql("SELECT project_code, deal_id FROM erp_projects", conn)
    engine.dispose()
    assert projects.to_dict("records") == [{"project_code": "D100", "deal_id": "D100"}]
