"""What keeps a posting plan on PostgreSQL within reach of DuckDB (issue 12, item 5).

Asserted on what PostgreSQL is asked and knows, not on wall time: the plan's scratch
tables are analyzed on their key columns from a small sample, and the plan looks up live
lines by entry and version rather than by a computed external id.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from posting.plan import (
    MAX_EXTERNAL_ID,
    TIME_LINES,
    Scope,
    _plan_invoices_sql,
    _plan_lines_sql,
    _reversals_sql,
    external_id,
    external_id_sql,
)
from staging_models.db import StagingDB, analyze


def test_a_scratch_table_is_analyzed_on_its_key_columns_from_a_small_sample(
    pg_db: StagingDB,
) -> None:
    with pg_db.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TEMP TABLE scratch AS SELECT g AS k, mod(g, 500) AS grp, repeat('x', 200) AS wide"
            " FROM generate_series(1, 20000) g"
        )
        before = conn.exec_driver_sql("SHOW default_statistics_target").scalar_one()
        analyze(conn, "scratch (k, grp)", target=10)
        stats = conn.exec_driver_sql(
            """SELECT attname, cardinality(histogram_bounds::text::text[]) FROM pg_stats
               WHERE tablename = 'scratch' ORDER BY attname"""
        ).fetchall()
        after = conn.exec_driver_sql("SHOW default_statistics_target").scalar_one()
        rows = conn.exec_driver_sql(
            "SELECT reltuples FROM pg_class WHERE oid = 'scratch'::regclass"
        ).scalar_one()
    assert [s[0] for s in stats] == ["grp", "k"]  # not the wide column
    assert all(n is None or n <= 11 for _, n in stats)  # a 10-bucket histogram at most
    assert after == before  # later ANALYZEs in the transaction keep the server's target
    assert rows == 20000


@pytest.mark.parametrize("doc,kind", [("te", "post"), ("inv", "rev")])
def test_the_sql_external_id_is_the_python_one_around_the_length_limit(
    any_db: StagingDB, doc: str, kind: str
) -> None:
    fixed = len(f"{doc}::v:{kind}")
    cases = [
        ("E" * (MAX_EXTERNAL_ID - fixed - len(str(v)) + d), v)
        for v in (1, 10, 123)
        for d in (-1, 0, 1)
    ] + [("é" * 60, 2), ("TE1", 7)]
    values = " UNION ALL ".join(f"SELECT '{i}' AS ident, {v} AS ver" for i, v in cases)
    sql = f"SELECT {external_id_sql(doc, 't.ident', 't.ver', kind)} FROM ({values}) t"
    with any_db.begin() as conn:
        got = [r[0] for r in conn.execute(sa.text(sql)).fetchall()]
    assert got == [external_id(doc, i, v, kind) for i, v in cases]
    assert any(len(g) == MAX_EXTERNAL_ID for g in got) and any("~" in g for g in got)


def _hash_conditions(plan: dict) -> list[str]:
    out = [plan.get("Hash Cond", ""), plan.get("Join Filter", "")]
    for child in plan.get("Plans", []):
        out += _hash_conditions(child)
    return [c for c in out if c]


@pytest.mark.parametrize("make_sql", [_plan_lines_sql, _plan_invoices_sql])
def test_the_plan_finds_live_lines_without_computing_external_ids(
    pg_db: StagingDB, make_sql
) -> None:
    """Joining on the computed id built every id twice (once to join, once to output)."""
    with pg_db.begin() as conn:
        sql, params = make_sql(conn, Scope())
        plan = conn.execute(sa.text(f"EXPLAIN (FORMAT JSON) {sql}"), params).scalar_one()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    joins = _hash_conditions(plan[0]["Plan"])
    assert joins and not any("md5" in c for c in joins), joins


def _nodes(plan: dict) -> list[str]:
    return [plan["Node Type"]] + [n for c in plan.get("Plans", []) for n in _nodes(c)]


def test_a_plan_without_reversals_is_a_plain_query_of_posts(pg_db: StagingDB) -> None:
    """A UNION with the reversals (none, in a first window) left the sort of every planned
    line to the leader; posts alone PostgreSQL can sort in its parallel workers. With
    reversals, the plan reads them from the table they were computed into."""
    with pg_db.begin() as conn:
        conn.exec_driver_sql(f"CREATE TEMP TABLE my_reversals AS {_reversals_sql(TIME_LINES)}")
        nodes = {}
        for name, reversals in (("none", ""), ("some", "my_reversals")):
            sql, params = _plan_lines_sql(conn, Scope(), reversals=reversals)
            plan = conn.execute(sa.text(f"EXPLAIN (FORMAT JSON) {sql}"), params).scalar_one()
            plan = plan if isinstance(plan, list) else json.loads(plan)
            nodes[name] = _nodes(plan[0]["Plan"])
            assert ("my_reversals" in sql) == bool(reversals)
    assert "Append" not in nodes["none"], nodes["none"]
    assert "Append" in nodes["some"], nodes["some"]


def test_reconciliation_parses_postgresql_streams_in_one_thread(
    pg_db: StagingDB, monkeypatch
) -> None:
    """pyarrow's threaded CSV reader took 5-10x as long on a 40,000-row input (2 busy cores).
    Observed, not replaced: the real reader parses."""
    import pyarrow.csv as pacsv

    from reconciliation import _inputs

    seen: list[bool] = []
    real = pacsv.read_csv

    def spy(buf, read_options=None, **kw):
        seen.append(read_options is not None and not read_options.use_threads)
        return real(buf, read_options=read_options, **kw)

    monkeypatch.setattr(_inputs.pacsv, "read_csv", spy)
    inp = _inputs.Input("t", _inputs.pa.schema([("n", _inputs.pa.int64())]), "SELECT 41 + 1 AS n")
    with pg_db.engine.connect() as conn:
        table = _inputs._pg_copy_arrow(conn, inp)
    assert table.column("n").to_pylist() == [42]
    assert seen == [True]


def test_a_validation_part_runs_with_room_to_hash_in_memory(pg_db: StagingDB) -> None:
    """The wide candidate statement spilled to temp files at the default 4 MB."""
    from staging_models.validation import CANDIDATE_WORK_MEM, validate_dataset

    default = pg_db.scalar("SHOW work_mem")
    with pg_db.begin() as conn:
        validate_dataset(pg_db, conn, "time_entries", now=datetime.now(UTC), actor="t")
        inside = conn.exec_driver_sql("SHOW work_mem").scalar_one()
    assert inside == CANDIDATE_WORK_MEM != default
    assert pg_db.scalar("SHOW work_mem") == default  # SET LOCAL: the part's transaction only


def test_validation_analyzes_its_scratch_tables_from_a_small_sample(
    pg_db: StagingDB, monkeypatch
) -> None:
    """Observed, not replaced: the real ANALYZE runs."""
    from staging_models.db import SCRATCH_STATISTICS_TARGET
    from staging_models.validation import validate_dataset

    calls: list[tuple[tuple[str, ...], int | None]] = []
    real = pg_db.analyze

    def spy(conn, *tables, target=None):
        calls.append((tables, target))
        return real(conn, *tables, target=target)

    monkeypatch.setattr(pg_db, "analyze", spy)
    with pg_db.begin() as conn:
        validate_dataset(pg_db, conn, "time_entries", now=datetime.now(UTC), actor="t")
    scratch = [t for tables, t in calls if tables[0].startswith(("cand_", "viol_", "qsum_"))]
    assert len(scratch) == 3 and set(scratch) == {SCRATCH_STATISTICS_TARGET}


def test_contradicting_keys_are_found_without_sorting_the_load(pg_db: StagingDB) -> None:
    """A distinct count made PostgreSQL sort every landed row; MIN <> MAX hashes them."""
    from connectors.sources.canonical import DATASETS
    from staging_models.validation import _dup_sql

    ds = DATASETS["time_entries"]
    sql = f"WITH scope AS (SELECT load_id FROM {ds.landing_table}) {_dup_sql(ds)}"
    with pg_db.begin() as conn:
        conn.exec_driver_sql(
            f"""INSERT INTO {ds.landing_table} (load_id, row_no, row_key, key_missing, content_hash)
                VALUES ('L1', 1, 'TE1', FALSE, 'a'), ('L1', 2, 'TE1', FALSE, 'b'),
                       ('L1', 3, 'TE2', FALSE, 'c'), ('L1', 4, 'TE2', FALSE, 'c'),
                       ('L2', 1, 'TE1', FALSE, 'a')"""
        )
        conn.exec_driver_sql(f"ANALYZE {ds.landing_table}")
        found = conn.exec_driver_sql(sql).fetchall()
        plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}").scalar_one()
    plan = plan if isinstance(plan, list) else json.loads(plan)

    def nodes(p: dict) -> list[str]:
        return [p["Node Type"]] + [n for c in p.get("Plans", []) for n in nodes(c)]

    assert found == [("L1", "TE1")]
    assert "Sort" not in nodes(plan[0]["Plan"]), nodes(plan[0]["Plan"])
