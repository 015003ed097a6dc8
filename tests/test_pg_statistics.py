"""PostgreSQL plans on the statistics stagepost gathers itself (issue 12, item 5).

Autovacuum analyzes late or never (never: temporary tables; this test server runs with it
off), and a freshly landed table planned as empty made the candidate statement of 5,100
entries a nest of loops: 21 s instead of 0.3 s. These tests assert on what the planner
knows and does, not on wall time: after a load the statistics count the landed rows, and
the candidate statement's plan estimates its rows and touches no row thousands of times.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.sample_data import write_sample
from connectors.sources.base import dataset_of
from connectors.sources.canonical import DATASETS
from staging_models.db import StagingDB
from staging_models.landing import land_file
from staging_models.validation import (
    ORDER,
    _candidate_sql,
    _violations_sql,
    settle_states,
    validate_all,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """The export of the issue: 5,000 entries and 100 corrections (5,100 rows), 1% bad."""
    inbox = tmp_path_factory.mktemp("pg_stats") / "inbox"
    write_sample(inbox, 5000, seed=1, bad_share=0.01, corrections_share=0.02)
    return inbox


def _land(db: StagingDB, inbox: Path) -> None:
    for f in sorted(inbox.iterdir()):
        if f.is_file() and dataset_of(f.name):
            land_file(db, f, dataset_of(f.name), workdir=inbox.parent / "work")


def _reltuples(db: StagingDB, table: str) -> float:
    return db.scalar("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)", {"t": table})


def _nodes(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def test_a_load_leaves_statistics_of_what_it_wrote(pg_db: StagingDB, sample: Path) -> None:
    _land(pg_db, sample)
    landed = pg_db.scalar("SELECT COUNT(*) FROM land_time_entries")
    versions = pg_db.scalar("SELECT COUNT(*) FROM stg_time_entries")
    assert landed == 5100
    # Never analyzed, PostgreSQL says -1 here; analyzed by the load, it counts the rows.
    assert _reltuples(pg_db, "land_time_entries") == landed
    assert _reltuples(pg_db, "stg_time_entries") == versions
    assert (
        pg_db.scalar(
            """SELECT COUNT(*) FROM pg_stats WHERE schemaname = current_schema()
           AND tablename = 'stg_time_entries' AND attname IN ('state', 'row_key', 'work_date')"""
        )
        == 3
    )


def test_the_candidate_statement_is_planned_on_real_row_counts(
    pg_db: StagingDB, sample: Path
) -> None:
    """The statement of the issue, on a freshly landed schema, as validation runs it."""
    _land(pg_db, sample)
    validate_all(
        pg_db, now=NOW, datasets=tuple(d for d in ORDER if d not in ("time_entries", "invoices"))
    )
    ds = DATASETS["time_entries"]
    with pg_db.begin() as conn:
        settle_states(conn, ds, now=NOW, actor="test")
        candidates = conn.execute(
            sa.text(
                """SELECT COUNT(*) FROM stg_time_entries
                   WHERE is_current AND state IN ('pending', 'quarantined')"""
            )
        ).scalar_one()
        (raw,) = conn.execute(
            sa.text(f"EXPLAIN (ANALYZE, FORMAT JSON) {_candidate_sql(pg_db, ds)}"),
            {"latest_today": (NOW + timedelta(hours=14)).date()},
        ).one()
        conn.rollback()
    plan = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
    assert plan["Actual Rows"] == candidates > 4000
    # Before: estimated 1 row (tables "empty"), so every join became a nested loop.
    assert plan["Plan Rows"] > candidates / 5
    # No node re-reads its input per outer row: before, the duplicate check sorted 5,096
    # landed rows once per candidate (22 million rows), the rate lookup scanned the rate
    # cards per entry. Now every node handles a few times the candidates at most.
    worst = max(_nodes(plan), key=lambda n: n["Actual Rows"] * n["Actual Loops"])
    assert worst["Actual Rows"] * worst["Actual Loops"] <= 5 * candidates, worst["Node Type"]


def test_violations_in_one_scan_are_those_of_one_scan_per_rule(
    any_db: StagingDB, tmp_path: Path
) -> None:
    """PostgreSQL finds violations in one scan of the candidates (`one_scan`), DuckDB in one
    per rule: both forms give the same rows on both backends."""
    inbox = tmp_path / "inbox"
    write_sample(inbox, 400, seed=3, bad_share=0.2)
    _land(any_db, inbox)
    validate_all(any_db, now=NOW, datasets=tuple(d for d in ORDER if d != "time_entries"))
    ds = DATASETS["time_entries"]
    with any_db.begin() as conn:
        settle_states(conn, ds, now=NOW, actor="test")
        conn.exec_driver_sql("DROP TABLE IF EXISTS cand_x")
        conn.execute(
            sa.text(f"CREATE TEMP TABLE cand_x AS {_candidate_sql(any_db, ds)}"),
            {"latest_today": (NOW + timedelta(hours=14)).date()},
        )
        rows = {
            form: set(
                conn.exec_driver_sql(_violations_sql("time_entries", "cand_x", one_scan=form))
            )
            for form in (False, True)
        }
        conn.rollback()
    assert rows[True] == rows[False]
    assert len({r[2] for r in rows[True]}) >= 10  # many rules broken, many rows
