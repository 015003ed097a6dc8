"""Posting speed: a whole posting window (plan + ledger + send) into the SQL interface target on
PostgreSQL, against the same lines posted without a ledger, in the same run.

    PYTHONPATH=. python bench/posting.py --lines 200000 [--repeat 3] [--batch N] [--staging-url URL]

Three figures on the same N lines, in the same batches, each into a fresh ERP schema:
- bare:   COPY of the lines straight into erp_time_lines, batch by batch (no checks, no ledger);
- target: SqlInterfaceTarget.post_time_lines, batch by batch (ERP checks, no ledger);
- window: run_window over N validated entries in staging (plan, ledger, look-up before
          create, ERP checks, per-batch ledger updates).
Prints lines/s and the ratios window/target (the ledger's overhead) and window/bare.
Staging defaults to a DuckDB file (the embedded default; target window/target <= 1.25);
`--staging postgres` puts it in a throwaway schema of the same PostgreSQL as the ERP
(targets: window/target <= 1.5 and >= 50,000 lines/s); `--staging-url` names any other.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from connectors.erp.base import TIME_LINE_COLUMNS
from connectors.erp.sql_interface import TIME_LINE_SCHEMA, SqlInterfaceTarget
from connectors.sql import copy_arrow, read_frame, to_arrow
from posting.window import WindowConfig, run_window
from staging_models.db import StagingDB

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
BATCH = WindowConfig().batch_size  # the window's default; --batch changes it for all three
#: (window/target, lines/s of the window) per staging backend; None: no target.
TARGETS = {"duckdb": (1.25, None), "postgresql": (1.5, 50_000)}


def _series(db: StagingDB, n: int) -> str:
    if db.is_duckdb:
        return f"SELECT i FROM range(1, {n + 1}) t(i)"
    return f"SELECT i FROM generate_series(1, {n}) AS t(i)"


def stage(db: StagingDB, n: int) -> None:
    """N current, valid, validated entries over 50 projects and 100 employees (set-based)."""
    now = datetime.now(UTC)
    with db.begin() as conn:
        conn.exec_driver_sql("DELETE FROM validated_time_entries")
        conn.exec_driver_sql("DELETE FROM stg_time_entries")
        common = f"""
            SELECT 'B' || CAST(i AS VARCHAR) AS entry_id, 'E' || CAST(i % 100 AS VARCHAR) AS emp,
                   'P' || CAST(i % 50 AS VARCHAR) AS proj, DATE '2026-11-01' + CAST(i % 28 AS INTEGER) AS d,
                   CAST(1 + (i % 32) * 0.25 AS NUMERIC(10, 4)) AS hours
            FROM ({_series(db, n)}) s"""
        conn.execute(
            sa.text(
                f"""INSERT INTO stg_time_entries (row_key, version, load_id, row_no, key_missing,
                        content_hash, entry_id, employee_id, project_code, task_code, work_date,
                        hours, billable, bill_rate, currency, approval_status, deleted, is_current,
                        state, landed_at)
                    SELECT entry_id, 1, 'Lbench', 1, FALSE, 'h', entry_id, emp, proj, 'T1', d,
                           hours, TRUE, 120, 'EUR', 'approved', FALSE, TRUE, 'valid', :now
                    FROM ({common}) c"""
            ),
            {"now": now},
        )
        conn.execute(
            sa.text(
                f"""INSERT INTO validated_time_entries (entry_id, version, content_hash,
                        legal_entity, customer_id, employee_id, project_code, task_code,
                        work_date, hours, billable, bill_rate, rate_source, amount, currency,
                        description, validated_at)
                    SELECT entry_id, 1, 'h', 'DE01', 'C1', emp, proj, 'T1', d, hours, TRUE, 120,
                           'entry', CAST(hours * 120 AS NUMERIC(18, 2)), 'EUR', 'bench', :now
                    FROM ({common}) c"""
            ),
            {"now": now},
        )


def analyze(db: StagingDB) -> None:
    """PostgreSQL staging: statistics autovacuum would gather after a load of this size."""
    if not db.is_duckdb:
        with db.begin() as conn:
            for t in ("stg_time_entries", "validated_time_entries"):
                conn.exec_driver_sql(f"ANALYZE {t}")


def erp_schema(admin: sa.Engine) -> tuple[str, str]:
    schema = f"bench_erp_{uuid.uuid4().hex[:8]}"
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    return schema, f"{PG_URL}?options=-csearch_path%3D{schema}"


def master(target: SqlInterfaceTarget) -> None:
    target.ensure_master_data(
        pd.DataFrame({"customer_id": ["C1"], "customer_name": ["Bench"]}),
        pd.DataFrame(
            {
                "employee_id": [f"E{i}" for i in range(100)],
                "employee_name": "x",
                "legal_entity": "DE01",
            }
        ),
        pd.DataFrame(
            {
                "project_code": [f"P{i}" for i in range(50)],
                "project_name": "x",
                "customer_id": "C1",
                "legal_entity": "DE01",
                "currency": "EUR",
            }
        ),
        pd.DataFrame(
            {"project_code": [f"P{i}" for i in range(50)], "task_code": "T1", "task_name": "x"}
        ),
    )


def lines_frame(db: StagingDB) -> pd.DataFrame:
    """The same lines the window posts, as an ERP frame (built once, outside the timing)."""
    with db.engine.connect() as conn:
        df = read_frame(
            conn,
            """SELECT 'te:' || entry_id || ':v1:post' AS external_id, 'post' AS kind,
                      CAST(NULL AS VARCHAR) AS reverses_external_id, entry_id,
                      version AS entry_version, legal_entity, employee_id, project_code,
                      task_code, work_date, '2026-11' AS period, hours, bill_rate, amount,
                      currency, description
               FROM validated_time_entries ORDER BY entry_id""",
        )
    return df[list(TIME_LINE_COLUMNS)]


def bare_copy(url: str, df: pd.DataFrame) -> None:
    """COPY batch by batch into erp_time_lines: the floor for getting these rows into the table."""
    target = SqlInterfaceTarget(url)  # creates the tables
    try:
        for i in range(0, len(df), BATCH):
            with target.engine.begin() as conn:
                copy_arrow(
                    conn, "erp_time_lines", to_arrow(df.iloc[i : i + BATCH], TIME_LINE_SCHEMA)
                )
    finally:
        target.close()


def target_only(url: str, df: pd.DataFrame) -> None:
    target = SqlInterfaceTarget(url)
    master(target)
    try:
        for i in range(0, len(df), BATCH):
            result = target.post_time_lines(df.iloc[i : i + BATCH])
            assert not result.rejected, result.rejected
    finally:
        target.close()


def reset_ledger(db: StagingDB) -> None:
    with db.begin() as conn:
        for t in ("posting_ledger", "posting_batches", "posting_windows", "posting_lock"):
            conn.exec_driver_sql(f"DELETE FROM {t}")
    with db.engine.connect() as conn:
        if db.is_duckdb:
            conn.exec_driver_sql("CHECKPOINT")


def window(db: StagingDB, url: str, n: int) -> None:
    target = SqlInterfaceTarget(url)
    master(target)
    try:
        result = run_window(db, target, WindowConfig(dry_run=False, batch_size=BATCH))
        assert result.counts["confirmed"] == n, result.counts
    finally:
        target.close()


def timed(admin: sa.Engine, fn: Callable[[str], None]) -> float:
    schema, url = erp_schema(admin)
    try:
        t = time.perf_counter()
        fn(url)
        return time.perf_counter() - t
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def staging(admin: sa.Engine, backend: str, url: str, tmp: Path) -> Iterator[StagingDB]:
    """Staging at `url`, else a DuckDB file in `tmp` or a throwaway schema of `PG_URL`."""
    schema = None
    if not url and backend == "postgres":
        schema = f"bench_stg_{uuid.uuid4().hex[:8]}"
        with admin.begin() as c:
            c.exec_driver_sql(f"CREATE SCHEMA {schema}")
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    db = StagingDB(url or f"duckdb:///{tmp / 'staging.duckdb'}")
    try:
        db.init_schema()
        yield db
    finally:
        db.engine.dispose()
        if schema:
            with admin.begin() as c:
                c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    global BATCH
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--staging", choices=("duckdb", "postgres"), default="duckdb")
    ap.add_argument("--staging-url", default="", help="instead of --staging")
    ap.add_argument("--batch", type=int, default=BATCH, help="lines per batch (all three figures)")
    args = ap.parse_args()
    BATCH = args.batch
    admin = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with (
        tempfile.TemporaryDirectory(prefix="stagepost-bench-") as tmp,
        staging(admin, args.staging, args.staging_url, Path(tmp)) as db,
    ):
        t = time.perf_counter()
        stage(db, args.lines)
        analyze(db)
        print(
            f"staged {args.lines:,} validated entries in {time.perf_counter() - t:.2f} s ({db!r})"
        )
        df = lines_frame(db)
        runs: dict[str, list[float]] = {"bare": [], "target": [], "window": []}
        for r in range(args.repeat):
            runs["bare"].append(timed(admin, lambda url: bare_copy(url, df)))
            runs["target"].append(timed(admin, lambda url: target_only(url, df)))
            reset_ledger(db)  # outside the timing: a fresh ledger, as in the first window
            runs["window"].append(timed(admin, lambda url: window(db, url, args.lines)))
            print(
                f"run {r + 1}: "
                + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in runs.items())
                + f"; window/target {runs['window'][-1] / runs['target'][-1]:.2f}"
            )
        med = {k: statistics.median(v) for k, v in runs.items()}
        n = args.lines
        print(f"\n{n:,} lines, batches of {BATCH:,}, ERP on PostgreSQL, medians of {args.repeat}:")
        for k in ("bare", "target", "window"):
            print(f"  {k:7s} {med[k]:7.2f} s  {n / med[k]:>10,.0f} lines/s")
        ratios = [w / t for w, t in zip(runs["window"], runs["target"], strict=True)]
        max_ratio, min_rate = TARGETS["duckdb" if db.is_duckdb else "postgresql"]
        ratio = statistics.median(ratios)
        print(
            f"  ledger overhead window/target: median {ratio:.2f} "
            f"(per run {', '.join(f'{x:.2f}' for x in ratios)}; target <= {max_ratio}: "
            f"{'met' if ratio <= max_ratio else 'NOT met'})"
        )
        if min_rate is not None:
            rate = n / med["window"]
            print(
                f"  window {rate:,.0f} lines/s (target >= {min_rate:,}: "
                f"{'met' if rate >= min_rate else 'NOT met'})"
            )
        print(f"  window/bare COPY: {med['window'] / med['bare']:.2f}")
    admin.dispose()


if __name__ == "__main__":
    main()
