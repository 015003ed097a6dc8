"""Re-validate now against a real Dagster webserver (`dg dev`, as `./dev ui` runs it): the desk's
GraphQL launch starts `revalidate_job`, tagged with the desk user, and the run releases a row
whose master data was fixed meanwhile."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from desk import revalidate
from staging_models.db import StagingDB
from tests.support.dagster_ui import ROOT, dagster_ui
from tests.support.staging_helpers import EMPLOYEES, World, entry


@pytest.mark.slow
def test_revalidate_launches_a_real_run_that_releases_fixed_rows(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = StagingDB(f"duckdb:///{data / 'staging.duckdb'}")
    db.init_schema()
    w = World(db, tmp_path / "files").master()
    w.land("time_entries", [entry(entry_id="TE3", employee_id="E9")])
    w.validate()
    assert w.codes("TE3") == {"TE_UNKNOWN_EMPLOYEE"}
    # The missing employee arrives (landed, not validated yet: that is the desk's button).
    w.land("employees", [*EMPLOYEES, dict(EMPLOYEES[0], employee_id="E9", employee_name="Eve")])
    db.engine.dispose()  # the run's process takes the embedded file

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {"STAGEPOST_DATA_DIR": str(data)}
    with dagster_ui(home, env, tmp_path / "dg.log") as ui:
        launched = revalidate.launch("otto", base_url=f"http://127.0.0.1:{ui.port}")
        assert launched.url == f"http://127.0.0.1:{ui.port}/runs/{launched.run_id}"
        run = ui.wait([launched.run_id])[launched.run_id]
        assert run["status"] == "SUCCESS", ui.log.read_text()[-3000:]
        assert {"key": "stagepost/desk_user", "value": "otto"} in run["tags"]
    assert w.state("TE3") == "valid"
    assert (
        db.scalar(
            "SELECT actor FROM quarantine_events WHERE row_key = 'TE3' AND event = 'released'"
        )
        == f"run {launched.run_id}"
    )
    db.engine.dispose()
