"""The finance desk's worklist at 100,000 open exceptions: first page, a filtered page and a
deep page, on DuckDB and PostgreSQL staging.

    ./dev bench desk [--rows 100000] [--repeat 30] [--backends duckdb,postgresql] [--pg-url URL]

Per backend, a fresh staging database gets `--rows` open quarantine rows written set-based
(time entries mostly, some master data and invoices; 2% keyless rows of which repeats group;
rule codes, legal entities, projects and first-seen times spread over 90 days), then the
desk's worklist is rebuilt once (timed: `staging_models.desk_items.refresh`, with the routing of every new
group) and each page is read `--repeat` times, both as the query (`desk.worklist.page`) and
as the HTTP request a browser makes (TestClient, signed in, page rendered):

- first:    the oldest 50 open exceptions, and the count;
- filtered: one rule code and one owner;
- deep:     the page after the 90,000th exception (keyset cursor).

Target: p95 <= 300 ms for every page on both backends.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from bench.postgres import staging  # a fresh DuckDB file or a throwaway PostgreSQL schema
from desk import worklist
from staging_models import desk_items
from staging_models.db import StagingDB

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_MS = 300.0
RULES = (
    "TE_PROJECT_CLOSED",
    "TE_UNKNOWN_EMPLOYEE",
    "TE_HOURS_OVER_24",
    "TE_RATE_MISSING",
    "TE_PROJECT_ON_HOLD,TE_RATE_MISSING",
    "TE_WORK_DATE_FORMAT",
    "TE_LEGAL_ENTITY_MISMATCH",
)


def fill(db: StagingDB, rows: int) -> None:
    """`rows` open quarantine rows, set-based."""
    rules = " ".join(f"WHEN {i} THEN '{r}'" for i, r in enumerate(RULES))
    messages = "'one sentence per rule; as the contracts write them'"
    sql = f"""
    INSERT INTO quarantine (dataset, row_key, version, load_id, source_file, row_no, rule_codes,
                            messages, raw_values, first_seen, last_seen, status)
    SELECT CASE WHEN i % 50 = 0 THEN 'invoices' WHEN i % 40 = 0 THEN 'projects'
                ELSE 'time_entries' END,
           CASE WHEN i % 50 = 7 THEN '~Lbench:' || CAST(i AS VARCHAR)
                ELSE 'K' || lpad(CAST(i AS VARCHAR), 7, '0') END,
           1, 'Lbench' || CAST(i / 5000 AS VARCHAR), 'time_entries_' || CAST(i / 5000 AS VARCHAR) || '.csv',
           i % 5000 + 2,
           CASE i % {len(RULES)} {rules} END,
           {messages},
           '{{"entry_id": "' || CASE WHEN i % 50 = 7 THEN '' ELSE 'K' || CAST(i AS VARCHAR) END
             || '", "project_code": "P' || CAST(i % 400 AS VARCHAR)
             || '", "legal_entity": "' || CASE WHEN i % 3 = 0 THEN 'DE01' ELSE 'US01' END
             || '", "hours": "' || CASE WHEN i % 50 = 7 THEN CAST(i % 9 AS VARCHAR) ELSE '7.5' END
             || '"}}',
           TIMESTAMP WITH TIME ZONE '2026-09-01 00:00:00+00' + (i % 90) * INTERVAL '1 day'
             + (i % 86400) * INTERVAL '1 second',
           TIMESTAMP WITH TIME ZONE '2026-12-01 00:00:00+00',
           CASE WHEN i % 100 = 99 THEN 'ignored' ELSE 'open' END
    FROM generate_series(1, {int(rows)}) AS g(i)
    """
    with db.begin() as conn:
        conn.execute(sa.text(sql))
        db.analyze(conn, "quarantine")


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def p95(ms: list[float]) -> float:
    return statistics.quantiles(ms, n=20, method="inclusive")[-1] if len(ms) > 1 else ms[0]


def client_for(db: StagingDB):
    from starlette.testclient import TestClient

    from desk.app import create_app
    from desk.users import add_user

    add_user(db, "bench", "operations", password="bench password 1")
    client = TestClient(create_app(db, secret=b"b" * 32))
    token = re.search(r'name="login_token" value="([^"]+)"', client.get("/login").text)[1]
    client.post(
        "/login", data={"login_token": token, "username": "bench", "password": "bench password 1"}
    )
    return client


def run(backend: str, rows: int, repeat: int, work: Path, pg_url: str) -> list[tuple]:
    results = []
    with staging(backend, work, pg_url) as db:
        t = time.perf_counter()
        fill(db, rows)
        fill_s = time.perf_counter() - t
        t = time.perf_counter()
        desk_items.refresh(db)
        refresh_s = time.perf_counter() - t
        groups = db.scalar("SELECT count(*) FROM desk_items WHERE status = 'open'")
        print(
            f"{backend}: {rows:,} quarantine rows written in {fill_s:.1f} s; worklist built in "
            f"{refresh_s:.2f} s ({groups:,} open groups)"
        )
        # The deep page starts 90% of the way down the list (row 90,000 of 100,000).
        deep_row = db.query_df(
            f"""SELECT first_seen, dataset, group_key FROM desk_items WHERE status = 'open'
               ORDER BY first_seen, dataset, group_key LIMIT 1 OFFSET {groups * 9 // 10}"""
        ).iloc[0]
        cursor = worklist.encode_cursor(
            {
                "first_seen": deep_row.first_seen.to_pydatetime(),
                "dataset": deep_row.dataset,
                "group_key": deep_row.group_key,
            }
        )
        owner = db.scalar("SELECT owner FROM desk_assignments LIMIT 1")
        filtered = worklist.Filters(rule="TE_RATE_MISSING", owner=owner)
        cases = {
            "first": (worklist.Filters(), None, {}),
            "filtered": (filtered, None, filtered.as_query()),
            "deep": (worklist.Filters(), cursor, {"after": cursor}),
        }
        client = client_for(db)
        for name, (f, after, query) in cases.items():
            pg = worklist.page(db, f, after=after)
            assert pg.rows, name
            q = timed(lambda f=f, after=after: worklist.page(db, f, after=after), repeat)
            resp = client.get("/", params=query)
            assert resp.status_code == 200 and resp.text.count("data-key=") == len(pg.rows)
            h = timed(lambda query=query: client.get("/", params=query), repeat)
            results.append(
                (
                    backend,
                    name,
                    pg.total,
                    statistics.median(q),
                    p95(q),
                    statistics.median(h),
                    p95(h),
                )
            )
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--backends", default="duckdb,postgresql")
    ap.add_argument("--pg-url", default=PG_URL)
    args = ap.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-desk-") as tmp:
        for backend in args.backends.split(","):
            results += run(backend.strip(), args.rows, args.repeat, Path(tmp), args.pg_url)
    print(
        f"\n{'backend':<11} {'page':<9} {'matches':>8} {'query p50':>10} {'query p95':>10} "
        f"{'HTTP p50':>9} {'HTTP p95':>9}  (ms; target p95 <= {TARGET_MS:.0f})"
    )
    worst = 0.0
    for backend, name, total, q50, q95, h50, h95 in results:
        worst = max(worst, h95)
        print(
            f"{backend:<11} {name:<9} {total:>8,} {q50:>10.1f} {q95:>10.1f} {h50:>9.1f} {h95:>9.1f}"
        )
    print(f"\nworst HTTP p95: {worst:.1f} ms ({'within' if worst <= TARGET_MS else 'OVER'} target)")
    return 0 if worst <= TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
