"""Validation speed: stagepost's validation (all rules + quarantine + states + validated copy)
against the bare DuckDB SQL floor of the same rules (candidate joins + one row per violation,
nothing written), on the same landed data, in the same run.

    ./dev bench validate --entries 1000000 [--bad-share 0.01] [--repeat 3]
    STAGEPOST_DUCKDB_MEMORY_LIMIT=1GB ./dev bench validate --entries 5000000 --repeat 1

Prints seconds, the ratio (target <= 2.0) and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

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

TIMED = ("time_entries", "invoices")  # master data is validated once, untimed (it is tiny)


def floor(db: StagingDB) -> tuple[float, int]:
    """Same rules, same joins, violations counted; nothing written."""
    t = time.perf_counter()
    n = 0
    with db.begin() as conn:
        for name in TIMED:
            cand = f"floor_cand_{name}"
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {cand}")
            conn.execute(
                sa.text(f"CREATE TEMP TABLE {cand} AS {_candidate_sql(db, DATASETS[name])}"),
                {"latest_today": "2026-11-23"},
            )
            n += conn.execute(
                sa.text(f"SELECT COUNT(*) FROM ({_violations_sql(name, cand)}) v")
            ).scalar_one()
            conn.exec_driver_sql(f"DROP TABLE {cand}")
    return time.perf_counter() - t, n


def prepare(work: Path, inbox: Path) -> None:
    """Land the files, validate master data, settle states (in a child process)."""
    db = StagingDB(f"duckdb:///{work / 'staging.duckdb'}")
    db.init_schema()
    for f in sorted(inbox.iterdir()):
        if f.is_file() and dataset_of(f.name):
            land_file(db, f, dataset_of(f.name))
    validate_all(db, datasets=tuple(n for n in ORDER if n not in TIMED))
    with db.begin() as conn:  # superseded / not postable: the same starting rows for both
        for name in TIMED:
            settle_states(conn, DATASETS[name], now=datetime.now(UTC), actor="bench")
    db.engine.dispose()


def prepared_copy(src: Path, dest: Path) -> StagingDB:
    """A fresh copy of the landed staging file (master data validated, states settled)."""
    shutil.copy(src, dest)
    db = StagingDB(f"duckdb:///{dest}")
    db.init_schema()
    return db


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--bad-share", type=float, default=0.01)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="stagepost-bench-"))
    inbox = work / "inbox"
    t = time.perf_counter()
    # In a child process, so that this process's peak memory is staging's alone.
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(
        target=write_sample,
        args=(inbox, args.entries),
        kwargs={"fmt": "csv", "seed": 1, "bad_share": args.bad_share},
    )
    p.start()
    p.join()
    print(f"generated {args.entries:,} entries in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    p = ctx.Process(target=prepare, args=(work, inbox))
    p.start()
    p.join()
    print(f"landed and prepared in {time.perf_counter() - t:.1f} s")
    landed = work / "staging.duckdb"

    floors, fulls = [], []
    for i in range(args.repeat):
        copy = prepared_copy(landed, work / f"run{i}.duckdb")
        f, violations = floor(copy)
        copy.engine.dispose()
        copy = prepared_copy(landed, work / f"run{i}.duckdb")
        t = time.perf_counter()
        res = validate_all(copy, datasets=TIMED)
        fulls.append(time.perf_counter() - t)
        floors.append(f)
        copy.engine.dispose()
    q = sum(r.quarantined for r in res.values())
    fl, fu = statistics.median(floors), statistics.median(fulls)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        f"violations: {violations:,}; quarantined rows: {q:,}; valid time entries: "
        f"{res['time_entries'].valid:,}"
    )
    print(f"bare DuckDB SQL floor (same rules, nothing written): {fl:.2f} s  (runs {floors})")
    print(f"stagepost validation incl. quarantine and states:    {fu:.2f} s  (runs {fulls})")
    print(f"ratio: {fu / fl:.2f}  (target <= 2.0)")
    print(
        f"peak RSS of the validating process: {rss:.2f} GB (target at 5M: < 1.5 GB; "
        f"DuckDB memory_limit {os.environ.get('STAGEPOST_DUCKDB_MEMORY_LIMIT', 'default')})"
    )


if __name__ == "__main__":
    main()
