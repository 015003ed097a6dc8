"""The code location loads, and shows what the README promises."""

from __future__ import annotations

from dagster import Definitions

from pipelines.definitions import defs


def test_definitions_load() -> None:
    assert isinstance(defs, Definitions)
    Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {
        "main_job",
        "ingest_time_entries_job",
        "ingest_nightly_job",
        "ignore_quarantined_job",
        "confirm_full_export_job",
        "posting_window_job",
        "reconciliation_job",
    } <= {j.name for j in repo.get_all_jobs()}


def test_schedules_hourly_and_nightly() -> None:
    repo = defs.get_repository_def()
    crons = {s.name: s.cron_schedule for s in repo.schedule_defs}
    assert crons["time_entries_hourly"] == "15 * * * *"
    assert crons["master_data_nightly"] == "0 2 * * *"


def test_every_dataset_has_a_landing_asset() -> None:
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    for ds in ("time_entries", "employees", "projects", "project_tasks", "rate_cards", "invoices"):
        assert f"landed_{ds}" in keys


def test_dg_cli_loads_the_project() -> None:
    """`dg` finds the code location through [tool.dg] in pyproject.toml, as the README says."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    dg = Path(sys.executable).parent / "dg"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [str(dg), "list", "defs", "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "DAGSTER_HOME": str(root / "dagster_home")},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "landed_time_entries" in out.stdout and "posting_window" in out.stdout
