"""Entries missing from a complete full export become tombstones, reversed by the next window;
a truncated export is held for an operator (DuckDB and PostgreSQL staging)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from dagster import DagsterInstance, Definitions, RunConfig

from assets.full_export import full_export_checks
from assets.ingestion import landing_assets
from assets.operations import ConfirmFullExportConfig
from assets.validation import validation_assets, validation_checks
from connectors.erp.sql_interface import SqlInterfaceTarget
from pipelines.jobs import ingest_time_entries_job
from pipelines.operator_jobs import confirm_full_export_job
from posting.window import RetryPolicy, WindowConfig, run_window
from reconciliation.compare import Period, reconcile
from resources.psa_source import PsaSource
from resources.staging import StagingDatabase
from staging_models.db import StagingDB, dispose_all
from staging_models.full_export import FullExportError, FullExportPolicy, decide
from staging_models.landing import LandingError, land_file
from staging_models.validation import conservation, validate_all
from tests.support.csvtools import te, write_csv
from tests.support.posting_helpers import erp_net_hours
from tests.support.staging_helpers import World

PATTERN = "time_entries_full_*"
POLICY = FullExportPolicy(PATTERN)
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
NOVEMBER = "time_entries_full_2026-11-01_2026-11-30.csv"


def _entry(n: int, day: date, **kw: str) -> dict[str, str]:
    approved = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
    base = {"approved_at": approved.isoformat(), "updated_at": approved.isoformat()}
    return te(entry_id=f"TE{n:02d}", work_date=day.isoformat(), **{**base, **kw})


def _november(n: int = 30) -> list[dict[str, str]]:
    """One entry a day, TE01 on 1 November ... TE30 on 30 November."""
    return [_entry(i, date(2026, 11, i)) for i in range(1, n + 1)]


def _without(*numbers: int) -> list[dict[str, str]]:
    """November without some entries (not the last: see the `updated_at` guard)."""
    return [r for r in _november() if int(r["entry_id"][2:]) not in numbers]


def _world(db: StagingDB, folder: Path, entries: list[dict[str, str]]) -> World:
    w = World(db, folder).master()
    w.land("time_entries", entries)
    validate_all(db, now=NOW, actor="test")
    return w


def _land(db: StagingDB, folder: Path, name: str, rows, policy=POLICY):
    result = land_file(db, write_csv(folder / name, "time_entries", rows), "time_entries",
                       full_export=policy)  # fmt: skip
    validate_all(db, now=NOW, actor="test")
    return result


def _current(db: StagingDB, key: str) -> dict:
    return (
        db.query_df(
            """SELECT version, state, deleted, load_id FROM stg_time_entries
               WHERE row_key = :k AND is_current""",
            {"k": key},
        )
        .iloc[0]
        .to_dict()
    )


def _live_versions(db: StagingDB) -> dict[str, int]:
    df = db.query_df(
        "SELECT row_key, version FROM stg_time_entries WHERE is_current AND NOT deleted"
    )
    return dict(zip(df["row_key"], df["version"].astype(int), strict=True))


@pytest.fixture
def erp(tmp_path: Path) -> Iterator[SqlInterfaceTarget]:
    target = SqlInterfaceTarget(f"duckdb:///{tmp_path / 'erp.duckdb'}")
    yield target
    target.close()


def _window(db: StagingDB, erp: SqlInterfaceTarget):
    cfg = WindowConfig(dry_run=False, retry=RetryPolicy(attempts=3, base_delay=0))
    return run_window(db, erp, cfg, now=NOW, sleep=lambda s: None)


def test_vanished_posted_entry_is_reversed_by_the_next_window(
    any_db: StagingDB, tmp_path: Path, erp: SqlInterfaceTarget
) -> None:
    _world(any_db, tmp_path, _november())
    assert _window(any_db, erp).counts["confirmed"] == 30

    gone = [r for r in _november() if r["entry_id"] != "TE05"]  # 1 of 30: 3.3% <= 5%
    result = _land(any_db, tmp_path, NOVEMBER, gone)
    judged = result.extra["full_export"]
    assert (judged["status"], judged["range_source"]) == ("applied", "file_name")
    assert (judged["scope_entries"], judged["vanished_entries"]) == (30, 1)
    te05 = _current(any_db, "TE05")
    assert (te05["version"], te05["state"], bool(te05["deleted"])) == (2, "not_postable", True)
    assert conservation(any_db)["ok"].all()

    period = Period(date(2026, 11, 1), date(2026, 11, 30))
    before = reconcile(any_db, erp, period, now=NOW, full_export_pattern=PATTERN)
    line = before.lines_frame().set_index("entry_id").loc["TE05"]
    assert line["class"] == "changed_in_psa_since_posting"
    assert f"missing from full PSA export {NOVEMBER}" in line["reasons"]

    window = _window(any_db, erp)
    assert window.counts["time_line_reversal_planned"] == 1
    assert "time_line_post_planned" not in window.counts
    net = erp_net_hours(erp)
    assert "TE05" not in net and len(net) == 29
    assert _window(any_db, erp).counts["lines_sendable"] == 0  # reversed once

    after = reconcile(any_db, erp, period, now=NOW, full_export_pattern=PATTERN)
    assert after.counts()["not_postable"] == 1  # no longer "deleted in the PSA, but posted"
    assert "changed_in_psa_since_posting" not in after.counts()
    assert "deleted_in_psa" not in after.counts()


@pytest.mark.parametrize(
    ("name", "policy", "source"),
    [
        (NOVEMBER, POLICY, "file_name"),
        (
            "time_entries_full_002.csv",
            FullExportPolicy(PATTERN, (date(2026, 11, 1), date(2026, 11, 30))),
            "setting",
        ),
        ("time_entries_full_002.csv", POLICY, "rows"),
    ],
)
def test_entries_outside_the_range_are_never_judged(
    any_db: StagingDB, tmp_path: Path, name: str, policy: FullExportPolicy, source: str
) -> None:
    october = [_entry(40 + i, date(2026, 10, i)) for i in range(1, 31)]
    _world(any_db, tmp_path, [*october, *_november()])
    # November only, without TE01: the rows span 2 to 30 November.
    result = _land(any_db, tmp_path, name, _november()[1:], policy)
    judged = result.extra["full_export"]
    assert judged["range_source"] == source
    live = _live_versions(any_db)
    assert all(live[r["entry_id"]] == 1 for r in october)  # never judged
    if source == "rows":  # TE01 (1 November) lies before the file's first row: not judged
        assert (judged["date_from"], judged["vanished_entries"]) == ("2026-11-02", 0)
        assert live["TE01"] == 1
    else:
        assert judged["vanished_entries"] == 1 and "TE01" not in live
        assert judged["status"] == "applied"


def test_an_entry_newer_than_the_export_is_not_judged(any_db: StagingDB, tmp_path: Path) -> None:
    late = _entry(31, date(2026, 11, 20), updated_at="2026-12-02T10:00:00Z")
    _world(any_db, tmp_path, [*_november(), late])
    # The export was taken before TE31 changed (its newest row is from 1 December).
    result = _land(any_db, tmp_path, NOVEMBER, _november())
    assert result.extra["full_export"]["vanished_entries"] == 0
    assert _live_versions(any_db)["TE31"] == 1


def _defs(url: str, inbox: Path) -> Definitions:
    staging = StagingDatabase(url=url)
    return Definitions(
        assets=[*landing_assets, *validation_assets],
        asset_checks=[*validation_checks, *full_export_checks],
        jobs=[ingest_time_entries_job, confirm_full_export_job],
        resources={
            "staging": staging,
            "psa_source": PsaSource(
                inbox=str(inbox), full_export_pattern=PATTERN, full_export_max_delete_share="0.05"
            ),
        },
    )


def test_truncated_export_is_held_until_an_operator_confirms(
    any_db: StagingDB, tmp_path: Path, erp: SqlInterfaceTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAGEPOST_DATA_DIR", str(tmp_path / "data"))
    _world(any_db, tmp_path, _november())
    before = _live_versions(any_db)
    inbox = tmp_path / "inbox"
    write_csv(inbox / NOVEMBER, "time_entries", _without(11, 12, 13))  # 3 of 30 missing: 10%
    defs = _defs(any_db.url, inbox)
    with DagsterInstance.ephemeral() as instance:
        ingest = defs.resolve_job_def(ingest_time_entries_job.name).execute_in_process(
            instance=instance
        )
        assert ingest.success
        checks = {
            e.asset_check_key.name: e
            for e in ingest.get_asset_check_evaluations()  # type: ignore[attr-defined]
        }
        held = checks["full_exports_not_held"]
        assert not held.passed and held.severity.value == "WARN"
        assert NOVEMBER in held.description and "3 of 30 entries" in held.description
        assert checks["every_row_accounted_for"].passed
        assert _live_versions(any_db) == before  # nothing tombstoned

        period = Period(date(2026, 11, 1), date(2026, 11, 30))
        rec = reconcile(any_db, erp, period, now=NOW, full_export_pattern=PATTERN)
        assert any("lacks 3 entries" in n for n in rec.notes)
        assert rec.counts()["deleted_in_psa"] == 3  # shown, not tombstoned

        with pytest.raises(FullExportError, match="operator"):
            decide(any_db, NOVEMBER, operator="  ", reason="checked")
        job = defs.resolve_job_def(confirm_full_export_job.name)

        def confirm(operator: str):
            cfg = ConfirmFullExportConfig(
                full_export=NOVEMBER, operator=operator, reason="PSA says 3 were deleted"
            )
            return job.execute_in_process(
                run_config=RunConfig(ops={"decide_full_export": cfg}),
                instance=instance,
                raise_on_error=False,
            )

        assert not confirm("").success  # required, non-empty
        assert _live_versions(any_db) == before
        done = confirm("ann@finance")
        assert done.success
        assert not confirm("ann@finance").success  # decided already: nothing held
    live = _live_versions(any_db)
    assert set(before) - set(live) == {"TE11", "TE12", "TE13"}
    assert {_current(any_db, k)["state"] for k in ("TE11", "TE12", "TE13")} == {"not_postable"}
    audit = any_db.query_df("SELECT * FROM full_export_events ORDER BY event_at, event")
    assert list(audit["event"]) == ["held", "confirmed"]
    confirmed = audit.iloc[1]
    assert confirmed["actor"].startswith("ann@finance (run ")
    assert confirmed["reason"] == "PSA says 3 were deleted"
    assert (confirmed["tombstoned_entries"], confirmed["file_name"]) == (3, NOVEMBER)
    row = any_db.query_df("SELECT status, decided_by FROM full_exports").iloc[0]
    assert row["status"] == "confirmed" and row["decided_by"].startswith("ann@finance")
    assert conservation(any_db)["ok"].all()


def test_dismissed_or_superseded_exports_tombstone_nothing(
    any_db: StagingDB, tmp_path: Path
) -> None:
    _world(any_db, tmp_path, _november())
    before = _live_versions(any_db)
    assert _land(any_db, tmp_path, NOVEMBER, _without(*range(5, 15))).extra["full_export"][
        "status"
    ] == ("held")
    decide(any_db, NOVEMBER, operator="ann", reason="export was cut off", action="dismiss")
    assert _live_versions(any_db) == before
    # Held again, then a later complete export settles it.
    _land(
        any_db, tmp_path, "time_entries_full_b_2026-11-01_2026-11-30.csv", _without(*range(2, 25))
    )
    complete = [*_november(), _entry(31, date(2026, 11, 30))]  # one new entry
    later = _land(any_db, tmp_path, "time_entries_full_c_2026-11-01_2026-11-30.csv", complete)
    assert later.extra["full_export"]["status"] == "complete"
    statuses = any_db.query_df("SELECT file_name, status FROM full_exports")
    assert sorted(statuses["status"]) == ["complete", "dismissed", "superseded"]
    with pytest.raises(FullExportError, match="superseded, not held"):
        decide(any_db, "time_entries_full_b_2026-11-01_2026-11-30.csv", operator="a", reason="r")
    assert _live_versions(any_db) == {**before, "TE31": 1}


def test_confirmation_skips_entries_changed_or_delivered_again(
    any_db: StagingDB, tmp_path: Path
) -> None:
    _world(any_db, tmp_path, _november())
    assert (
        _land(any_db, tmp_path, NOVEMBER, _without(11, 12, 13)).extra["full_export"]["status"]
        == "held"
    )
    # After the export: TE11 arrives again unchanged, TE12 with new hours.
    _land(any_db, tmp_path, "time_entries_002.csv", [_entry(11, date(2026, 11, 11))])
    _land(any_db, tmp_path, "time_entries_003.csv", [_entry(12, date(2026, 11, 12), hours="2")])
    result = decide(any_db, NOVEMBER, operator="ann", reason="checked in the PSA")
    assert (result.status, result.tombstoned_entries, result.skipped_entries) == (
        "confirmed",
        1,
        2,
    )
    validate_all(any_db, now=NOW, actor="test")
    live = _live_versions(any_db)
    assert "TE13" not in live and live["TE11"] == 1 and live["TE12"] == 2
    got = any_db.query_df("SELECT row_key, status FROM full_export_vanished ORDER BY row_key")
    assert got.values.tolist() == [["TE11", "skipped"], ["TE12", "skipped"], ["TE13", "tombstoned"]]
    assert conservation(any_db)["ok"].all()


def test_relanding_the_same_full_export_is_idempotent(any_db: StagingDB, tmp_path: Path) -> None:
    _world(any_db, tmp_path, _november())
    gone = [r for r in _november() if r["entry_id"] != "TE05"]
    first = _land(any_db, tmp_path, NOVEMBER, gone)
    versions = any_db.scalar("SELECT COUNT(*) FROM stg_time_entries")
    again = land_file(any_db, tmp_path / NOVEMBER, "time_entries", full_export=POLICY)
    assert again.status == "duplicate" and again.load_id == first.load_id
    # The same snapshot exported again (other bytes): nothing more vanishes.
    reexport = _land(any_db, tmp_path, "time_entries_full_2026-11-01_2026-11-30_b.csv", gone[::-1])
    assert reexport.extra["full_export"]["status"] == "complete"
    assert any_db.scalar("SELECT COUNT(*) FROM stg_time_entries") == versions
    assert any_db.scalar("SELECT COUNT(*) FROM full_export_vanished") == 1
    assert conservation(any_db)["ok"].all()


def test_an_entry_that_reappears_gets_a_new_live_version(
    any_db: StagingDB, tmp_path: Path, erp: SqlInterfaceTarget
) -> None:
    _world(any_db, tmp_path, _november())
    _window(any_db, erp)
    _land(any_db, tmp_path, NOVEMBER, [r for r in _november() if r["entry_id"] != "TE05"])
    _window(any_db, erp)
    assert "TE05" not in erp_net_hours(erp)
    # The PSA delivers it again, unchanged (an incremental export, or the next full one).
    again = _land(
        any_db, tmp_path, "time_entries_full_2026-11-01_2026-11-30_b.csv", _november()[::-1]
    )
    assert again.rows_new_version == 1
    te05 = _current(any_db, "TE05")
    assert (te05["version"], te05["state"], bool(te05["deleted"])) == (3, "valid", False)
    assert _window(any_db, erp).counts["time_line_post_planned"] == 1
    assert erp_net_hours(erp)["TE05"] == Decimal("7.5")


def test_settings_and_declared_ranges() -> None:
    assert FullExportPolicy.from_settings("") is None
    p = FullExportPolicy.from_settings(PATTERN, "2026-11-01..2026-11-30", "0.10")
    assert p.date_range == (date(2026, 11, 1), date(2026, 11, 30))
    assert p.max_delete_share == Decimal("0.10")
    assert p.matches("time_entries", NOVEMBER) and not p.matches("projects", NOVEMBER)
    assert not p.matches("time_entries", "time_entries_002.csv")
    with pytest.raises(FullExportError, match="FROM..TO"):
        FullExportPolicy.from_settings(PATTERN, "November")
    with pytest.raises(FullExportError, match="between 0 and 1"):
        FullExportPolicy.from_settings(PATTERN, "", "5")


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.definitions import defs
    from resources.settings import psa_source_resource

    monkeypatch.setenv("STAGEPOST_FULL_EXPORT_PATTERN", PATTERN)
    monkeypatch.setenv("STAGEPOST_FULL_EXPORT_RANGE", "2026-11-01..2026-11-30")
    monkeypatch.setenv("STAGEPOST_FULL_EXPORT_MAX_DELETE_SHARE", "0.02")
    policy = psa_source_resource().full_export_policy()
    assert policy == FullExportPolicy(
        PATTERN, (date(2026, 11, 1), date(2026, 11, 30)), Decimal("0.02")
    )
    monkeypatch.delenv("STAGEPOST_FULL_EXPORT_PATTERN")
    assert psa_source_resource().full_export_policy() is None
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert "full_exports_not_held" in checks


def test_a_file_name_range_that_ends_before_it_starts_refuses_the_file(
    duck_db: StagingDB, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "time_entries_full_2026-11-30_2026-11-01.csv", "time_entries", _november(2)
    )
    with pytest.raises(LandingError, match="ends"):
        land_file(duck_db, path, "time_entries", full_export=POLICY)
    assert duck_db.scalar("SELECT COUNT(*) FROM stg_time_entries") == 0


@pytest.fixture(autouse=True)
def _dispose() -> Iterator[None]:
    yield
    dispose_all()
