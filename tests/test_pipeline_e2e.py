"""The whole pipeline in-process on generated data: ingest, validate, post into a real SQL
interface-table ERP, correct after posting, and refuse to post from unvalidated staging."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from dagster import DagsterInstance, RunConfig

from assets.posting import POSTING_ASSET, PostingWindowConfig
from assets.reconciliation import ReconciliationConfig, resolve_period
from connectors.erp.sql_interface import SqlInterfaceTarget
from connectors.sample_data import write_sample
from pipelines.jobs import main_job
from pipelines.posting_jobs import posting_window_job
from pipelines.reconciliation_jobs import reconciliation_job
from resources.psa_source import PsaSource
from resources.staging import StagingDatabase
from staging_models.db import dispose_all, staging_db
from staging_models.ledger_tables import ledger_rows
from staging_models.validation import conservation
from tests.support.csvtools import write_csv
from tests.support.dagster_defs import local_definitions

#: The time-line ledger, each line's state as its batch makes it.
LEDGER = ledger_rows("posting_ledger")


@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict]:
    inbox = tmp_path / "inbox"
    files = write_sample(
        inbox, 3000, seed=5, as_of=date.today(), bad_share=0.02, corrections_share=0.02
    )
    staging = f"duckdb:///{tmp_path / 'staging.duckdb'}"
    erp = f"duckdb:///{tmp_path / 'erp.duckdb'}"
    defs = local_definitions(tmp_path, inbox, staging, erp)
    file_rows = sum(sum(1 for _ in open(f)) - 1 for f in files.values())
    yield {"defs": defs, "staging": staging, "erp": erp, "inbox": inbox, "file_rows": file_rows}
    dispose_all()


def _post(w: dict, instance: DagsterInstance, dry_run: bool = False):
    job = w["defs"].resolve_job_def(posting_window_job.name)
    cfg = RunConfig(
        ops={POSTING_ASSET: PostingWindowConfig(dry_run=dry_run, note="e2e", operator="e2e")}
    )
    return job.execute_in_process(run_config=cfg, instance=instance, raise_on_error=False)


def _erp_net(w: dict) -> dict[str, Decimal]:
    erp = SqlInterfaceTarget(w["erp"])
    try:
        lines = erp.read_time_lines(date(2000, 1, 1), date(2100, 1, 1))
    finally:
        erp.close()
    return lines.groupby("entry_id")["hours"].sum().to_dict()


def test_ingest_validate_post_correct(world: dict, instance: DagsterInstance) -> None:
    w = world
    main = w["defs"].resolve_job_def(main_job.name).execute_in_process(instance=instance)
    assert main.success
    db = staging_db(w["staging"])
    cons = conservation(db)
    assert cons["ok"].all(), cons.to_dict("records")
    # Every data row of every file is in the loads counts.
    assert db.scalar("SELECT SUM(rows_read) FROM loads WHERE status = 'landed'") == w["file_rows"]
    assert (w["inbox"] / "archive").is_dir() and not list(w["inbox"].glob("*.csv"))

    dry = _post(w, instance, dry_run=True)
    assert dry.success and _erp_net(w) == {}

    posted = _post(w, instance)
    assert posted.success
    valid = db.query_df("SELECT entry_id, hours FROM validated_time_entries")
    net = _erp_net(w)
    assert set(net) == set(valid["entry_id"])
    assert all(net[e] == h for e, h in zip(valid["entry_id"], valid["hours"], strict=True))
    ledger = db.query_df(
        f"SELECT state, COUNT(*) AS n FROM {ledger_rows('posting_ledger')} l GROUP BY state"
    )
    assert dict(ledger.values) == {"confirmed": len(valid)}

    # A correction after posting: reversal + new line, net = the new hours. Re-posting is a no-op.
    # (Which entry is corrected does not matter; ORDER BY keeps the test repeatable.)
    entry = db.query_df(
        "SELECT s.* FROM stg_time_entries s JOIN validated_time_entries v "
        "ON v.entry_id = s.row_key AND v.version = s.version ORDER BY s.row_key LIMIT 1"
    ).iloc[0]
    row = {
        c: entry[c]
        for c in entry.index
        if c
        in {
            "entry_id",
            "employee_id",
            "employee_name",
            "project_code",
            "task_code",
            "work_date",
            "billable",
            "bill_rate",
            "currency",
            "approval_status",
            "approved_by",
            "description",
        }
    }
    new_hours = Decimal(entry["hours"]) + Decimal("0.25")  # always a real change
    row.update(
        hours=str(new_hours),
        billable="true" if entry["billable"] else "false",
        bill_rate="" if entry["bill_rate"] is None else str(entry["bill_rate"]),
        approved_at=entry["approved_at"].isoformat(),
        updated_at="2099-01-01T00:00:00Z",
        deleted="false",
    )
    write_csv(w["inbox"] / "time_entries_fix.csv", "time_entries", [row])
    assert w["defs"].resolve_job_def(main_job.name).execute_in_process(instance=instance).success
    states = db.query_df(
        "SELECT s.version, s.state, q.rule_codes FROM stg_time_entries s LEFT JOIN quarantine q "
        "ON q.row_key = s.row_key AND q.version = s.version WHERE s.row_key = :e",
        {"e": entry["entry_id"]},
    )
    assert sorted(states["state"]) == ["superseded", "valid"], states.to_dict("records")
    assert _post(w, instance).success
    assert _erp_net(w)[entry["entry_id"]] == new_hours
    kinds = db.query_df(
        f"SELECT kind, state FROM {LEDGER} l WHERE entry_id = :e ORDER BY planned_at, kind",
        {"e": entry["entry_id"]},
    )
    assert sorted(kinds["kind"]) == ["post", "post", "reversal"], db.query_df(
        f"SELECT external_id, kind, state, hours, window_id FROM {LEDGER} l WHERE entry_id = :e",
        {"e": entry["entry_id"]},
    ).to_dict("records")
    before = _erp_net(w)
    assert _post(w, instance).success
    assert _erp_net(w) == before

    # Reconciliation after posting: only quarantined and not-postable entries are exceptions,
    # and the quarantined rows without an entry id or a readable date are among them.
    rec = w["defs"].resolve_job_def(reconciliation_job.name).execute_in_process(instance=instance)
    assert rec.success
    classes = db.query_df('SELECT "class", COUNT(*) AS n FROM rec_lines GROUP BY "class"')
    found = dict(classes.values)
    assert set(found) <= {"quarantined", "quarantined_without_key", "not_postable"}, found
    assert found.get("quarantined", 0) > 0  # the generated bad rows
    period = resolve_period(ReconciliationConfig(), datetime.now(UTC).date())
    keyless = db.query_df(
        """SELECT COUNT(*) AS n FROM stg_time_entries WHERE is_current AND state = 'quarantined'
           AND (key_missing OR work_date IS NULL)
           AND (work_date IS NULL OR work_date BETWEEN :f AND :t)""",
        {"f": period.date_from, "t": period.date_to},
    )["n"].iloc[0]
    assert keyless > 0 and found.get("quarantined_without_key", 0) == keyless


def test_posting_refuses_unvalidated_staging(world: dict, instance: DagsterInstance) -> None:
    w = world
    land_only = (
        w["defs"]
        .resolve_job_def(main_job.name)
        .execute_in_process(instance=instance, asset_selection=None, raise_on_error=False)
    )
    assert land_only.success
    # New rows landed but not yet validated: posting must refuse, and post nothing.
    from dagster import materialize

    from assets.ingestion import landing_assets

    write_csv(
        w["inbox"] / "time_entries_late.csv",
        "time_entries",
        [
            {
                "entry_id": "LATE1",
                "employee_id": "x",
                "project_code": "y",
                "task_code": "z",
                "work_date": "2026-01-05",
                "hours": "1",
                "billable": "true",
                "currency": "USD",
                "approval_status": "approved",
                "approved_at": "2026-01-06T00:00:00Z",
                "updated_at": "2026-01-06T00:00:00Z",
            }
        ],
    )
    res = materialize(
        landing_assets,
        resources={
            "staging": StagingDatabase(url=w["staging"]),
            "psa_source": PsaSource(inbox=str(w["inbox"]), stable_seconds=0),
        },
        instance=instance,
    )
    assert res.success
    refused = _post(w, instance)
    assert not refused.success
    failure = [e for e in refused.all_events if e.event_type_value == "STEP_FAILURE"][0]
    error = str(failure.event_specific_data.error)
    assert "Validation has not settled every row of time_entries" in error
    assert "1 row(s) from time_entries_late.csv" in error  # the refusal names the file
    assert _erp_net(w) == {}
