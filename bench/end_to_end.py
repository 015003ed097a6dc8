"""End to end: a user's run from PSA export to reconciled workbook, each stage against the
bare-DuckDB floor of the same work, in the same run.

    ./dev bench end_to_end [--sizes 1000000,5000000]
        [--repeat 3] [--dir DIR] [--stages land,validate]

`--stages` measures only the stages named; a stage a named one needs (the ones before it)
still runs, untimed and without its floor, and the stages after the last one named do not.

Per size, one seeded sample export (`connectors.sample_data`: master data, 1% bad rows, 2%
corrections) is generated once; each repeat copies it into a fresh inbox and runs, with the
embedded defaults (DuckDB staging file, SQL-interface ERP in a DuckDB file), the stages a
user's run does, through the functions the Dagster assets call:

- land:      `ingest_dataset` of every dataset from the local inbox (landing, versioning,
             archiving), as the landing assets;
- validate:  `validate_all` as the three validation assets call it (master data; master data
             and time entries; invoices), quarantine included;
- post:      the conservation check and a real window (`window_config` from the posting
             asset, `run_window`) into the SQL-interface ERP;
- reconcile: the PSA inbox check, `reconcile` of the sample's whole work-date span (the ERP
             read back through the target), `store_lines` and the IO manager's `store_frame`
             of rec_totals, rec_invoices and rec_kpis;
- workbook:  the reconciliation workbook asset's body (IO manager loads, one workbook for
             all legal entities and one per legal entity).

Floors, bare DuckDB on the same data, each before its stage:
- land:      `read_csv` of every file into a typed table plus one INSERT of it into another;
- validate:  one SQL pass of the time-entry and invoice rules (the candidates' joins, one row
             per violation) writing a quarantine table, on a copy of the landed file with
             master data validated and states settled (untimed);
- post:      one INSERT of the validated entries as ERP lines into `erp_time_lines` (primary
             key on external_id) of a fresh ERP file;
- reconcile: a three-way full outer join (current versions, confirmed ledger, ERP lines),
             classified and materialised;
- workbook:  an openpyxl write-only dump of the rows the workbooks hold (rec_lines, rec_totals,
             rec_invoices; per scope), no styling.

Every stage and every floor runs in a fresh process (spawned), so its peak RSS is its own
(imports included, about 0.2 GB). Printed per stage: wall and CPU seconds, rows/s, peak RSS,
the floor's wall time and the ratio (min / median / max over repeats), then the total.
Targets: every stage and the total at most 2x its floor; 5M under 2.5 GB peak RSS.
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
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

STAGES = ("land", "validate", "post", "reconcile", "workbook")
TARGET = 2.0
RSS_TARGET_GB = 2.5
MASTER = ("employees", "projects", "project_tasks", "rate_cards")


# -- paths of one repeat -----------------------------------------------------------------------


def _staging(work: Path) -> Path:
    return work / "staging.duckdb"


def _erp(work: Path) -> Path:
    return work / "erp.duckdb"


def _db(work: Path):
    from staging_models.db import StagingDB

    db = StagingDB(f"duckdb:///{_staging(work)}")
    db.init_schema()
    return db


def _period(work: Path):
    """The sample's whole work-date span (every entry compared)."""
    import duckdb

    from reconciliation.compare import Period

    con = duckdb.connect(str(_staging(work)), read_only=True)
    lo, hi = con.execute("SELECT min(work_date), max(work_date) FROM stg_time_entries").fetchone()
    con.close()
    return Period(lo, hi)


# -- the stages, as the assets run them ----------------------------------------------------------


def _psa(work: Path):
    """The local inbox, taking files of any size (STAGEPOST_MAX_FILE_ROWS: 1M by default,
    and the sample's time entries are one file)."""
    from resources.psa_source import PsaSource

    return PsaSource(inbox=str(work / "inbox"), stable_seconds=0, max_file_rows=100_000_000)


def land(work: Path) -> int:
    from connectors.sources.canonical import DATASETS
    from staging_models.landing import ingest_dataset

    db = _db(work)
    psa = _psa(work)
    fmt, full_export = psa.file_format(), psa.full_export_policy()
    rows = 0
    for dataset in DATASETS:
        with psa.open() as source:
            report = ingest_dataset(
                db, source, dataset, fmt=fmt, workdir=psa.workdir(), full_export=full_export
            )
        problems = [r.message for r in (*report.failures, *report.refused)]
        assert not problems, problems
        rows += int(report.totals().get("rows_read", 0))
    db.engine.dispose()
    return rows


def validate(work: Path) -> int:
    from staging_models.validation import validate_all

    db = _db(work)
    master = validate_all(db, actor="bench", datasets=MASTER)
    entries = validate_all(db, actor="bench", datasets=(*MASTER, "time_entries"))
    invoices = validate_all(db, actor="bench", datasets=("invoices",))
    db.engine.dispose()
    return (
        sum(r.checked for r in master.values())
        + entries["time_entries"].checked
        + invoices["invoices"].checked
    )


def post(work: Path) -> int:
    from assets.posting import PostingWindowConfig, window_config
    from connectors.erp.sql_interface import SqlInterfaceTarget
    from posting.window import run_window
    from resources.erp import PostingPolicy
    from staging_models.validation import conservation

    db = _db(work)
    cons = conservation(db, ("time_entries", "invoices"))
    assert cons["states_ok"].all(), cons
    config = PostingWindowConfig(dry_run=False, operator="bench")
    window = window_config(config, PostingPolicy(), "bench-run", "bench")
    target = SqlInterfaceTarget(f"duckdb:///{_erp(work)}")
    try:
        result = run_window(db, target, window)
    finally:
        target.close()
    assert result.status == "completed", result.message
    db.engine.dispose()
    return int(result.counts["confirmed"])


def reconcile_stage(work: Path) -> int:
    from connectors.erp.sql_interface import SqlInterfaceTarget
    from io_managers.staging_table import store_frame
    from reconciliation.compare import reconcile
    from reconciliation.psa_files import unlanded_rows
    from reconciliation.store import store_lines

    period = _period(work)
    db = _db(work)
    psa = _psa(work)
    with (
        psa.open() as source,
        tempfile.TemporaryDirectory(dir=psa.workdir(), prefix=".recon-") as tmp,
    ):
        inbox = unlanded_rows(db, source, fmt=psa.file_format(), workdir=Path(tmp))
    target = SqlInterfaceTarget(f"duckdb:///{_erp(work)}")
    try:
        rec = reconcile(
            db, target, period, now=datetime.now(UTC), unlanded=inbox.rows, notes=inbox.problems
        )
    finally:
        target.close()
    store_lines(db, rec.lines, "bench-run")
    store_frame(db, "rec_totals", rec.totals)
    store_frame(db, "rec_invoices", rec.invoices.astype({"backlog": bool}))
    store_frame(db, "rec_kpis", rec.kpi_frame())
    db.engine.dispose()
    return int(rec.kpi("approved_entries")["entries"])


def workbook(work: Path) -> int:
    from assets.reconciliation import _info
    from io_managers.staging_table import load_frame
    from reconciliation.compare import ALL
    from reconciliation.report import write_reconciliation_workbook
    from reconciliation.store import load_lines
    from staging_models.desk_breaches import breaches

    db = _db(work)
    kpis, totals = load_frame(db, "rec_kpis"), load_frame(db, "rec_totals")
    invoices = load_frame(db, "rec_invoices")
    info = _info(kpis)
    notes = [v for k, v in sorted(info.items()) if k.startswith("note_")]
    scopes = [ALL, *sorted(set(kpis["legal_entity"]) - {ALL, "(none)"})]
    lines = load_lines(db)
    overdue = breaches(db, datetime.now(UTC).date())
    rows = 0
    for scope in scopes:
        wb = write_reconciliation_workbook(
            work / "reports" / f"reconciliation_{scope}.xlsx",
            period_label=info["period"],
            kpis=kpis,
            totals=totals,
            invoices=invoices,
            lines=lines,
            notes=notes,
            legal_entity=scope,
            breaches=overdue,
        )
        rows += sum(wb.rows.values())
    db.engine.dispose()
    return rows


# -- the floors: bare DuckDB doing the same work ---------------------------------------------------


def land_floor(work: Path) -> int:
    """read_csv into a typed table, plus one INSERT of it into another."""
    import duckdb

    path = work / "floor_land.duckdb"
    con = duckdb.connect(str(path))
    rows = 0
    for i, f in enumerate(sorted((work / "generated").iterdir())):
        if f.suffix != ".csv":
            continue
        con.execute(f"CREATE TABLE land_{i} AS SELECT * FROM read_csv('{f}')")
        con.execute(f"CREATE TABLE stg_{i} AS SELECT * FROM land_{i} LIMIT 0")
        con.execute(f"INSERT INTO stg_{i} SELECT * FROM land_{i}")
        rows += con.execute(f"SELECT count(*) FROM land_{i}").fetchone()[0]
    con.close()
    path.unlink()
    return rows


def _validate_floor_prepare(work: Path) -> None:
    """A copy of the landed file, master data validated and states settled (untimed)."""
    from connectors.sources.canonical import DATASETS
    from staging_models.validation import settle_states, validate_all

    shutil.copy(_staging(work), work / "floor_validate.duckdb")
    from staging_models.db import StagingDB

    db = StagingDB(f"duckdb:///{work / 'floor_validate.duckdb'}")
    validate_all(db, datasets=MASTER)
    with db.begin() as conn:
        for name in ("time_entries", "invoices"):
            settle_states(conn, DATASETS[name], now=datetime.now(UTC), actor="bench")
    db.engine.dispose()


def validate_floor(work: Path) -> int:
    """The time-entry and invoice rules in one SQL pass each, writing a quarantine table."""
    import sqlalchemy as sa

    from connectors.sources.canonical import DATASETS
    from staging_models.db import StagingDB
    from staging_models.validation import _candidate_sql, _violations_sql

    db = StagingDB(f"duckdb:///{work / 'floor_validate.duckdb'}")
    rows = 0
    with db.begin() as conn:
        for name in ("time_entries", "invoices"):
            conn.execute(
                sa.text(f"CREATE TEMP TABLE cand AS {_candidate_sql(db, DATASETS[name])}"),
                {"latest_today": date.today()},
            )
            rows += conn.exec_driver_sql("SELECT count(*) FROM cand").scalar_one()
            conn.exec_driver_sql(
                f"CREATE TABLE floor_quarantine_{name} AS {_violations_sql(name, 'cand')}"
            )
            conn.exec_driver_sql("DROP TABLE cand")
    db.engine.dispose()
    return rows


def post_floor(work: Path) -> int:
    """One INSERT of the validated entries as lines into a keyed ERP table."""
    import duckdb

    con = duckdb.connect(str(work / "floor_erp.duckdb"))
    con.execute(f"ATTACH '{_staging(work)}' AS s (READ_ONLY)")
    con.execute(
        """INSERT INTO erp_time_lines (external_id, kind, reverses_external_id, entry_id,
               entry_version, legal_entity, employee_id, project_code, task_code, work_date,
               period, hours, bill_rate, amount, currency, description)
           SELECT 'te:' || entry_id || ':v' || CAST(version AS VARCHAR) || ':post', 'post', NULL,
                  entry_id, version, legal_entity, employee_id, project_code, task_code,
                  work_date, strftime(work_date, '%Y-%m'), hours, bill_rate, amount, currency,
                  description
           FROM s.validated_time_entries"""
    )
    rows = con.execute("SELECT count(*) FROM erp_time_lines").fetchone()[0]
    con.close()
    return rows


def _post_floor_prepare(work: Path) -> None:
    from connectors.erp.sql_interface import SqlInterfaceTarget

    SqlInterfaceTarget(f"duckdb:///{work / 'floor_erp.duckdb'}").close()


def reconcile_floor(work: Path) -> int:
    """Current versions, confirmed ledger lines and ERP lines in two full outer joins."""
    import duckdb

    period = _period(work)
    con = duckdb.connect()
    con.execute(f"ATTACH '{_staging(work)}' AS s (READ_ONLY)")
    con.execute(f"ATTACH '{_erp(work)}' AS e (READ_ONLY)")
    f, t = period.date_from, period.date_to
    con.execute(
        f"""CREATE TEMP TABLE floor AS
        SELECT COALESCE(p.entry_id, l.entry_id, e.entry_id) AS entry_id,
               p.hours AS psa_hours, l.hours AS ledger_hours, e.hours AS erp_hours,
               CASE WHEN e.entry_id IS NULL THEN 'missing_in_erp'
                    WHEN p.entry_id IS NULL AND l.entry_id IS NULL THEN 'unknown_to_staging'
                    WHEN e.entry_version <> p.version OR e.hours <> p.hours
                         OR e.amount <> l.amount OR e.project_code <> p.project_code
                         OR e.work_date <> p.work_date OR e.currency <> p.currency
                         OR l.entry_version <> p.version THEN 'mismatch'
                    ELSE 'in_sync' END AS status
        FROM (SELECT row_key AS entry_id, version, hours, project_code, work_date, currency
              FROM s.stg_time_entries
              WHERE is_current AND work_date BETWEEN DATE '{f}' AND DATE '{t}') p
        FULL JOIN (SELECT entry_id, entry_version, hours, amount FROM s.posting_ledger
                   WHERE state = 'confirmed' AND work_date BETWEEN DATE '{f}' AND DATE '{t}') l
               ON l.entry_id = p.entry_id
        FULL JOIN (SELECT entry_id, entry_version, hours, amount, project_code, work_date,
                          currency FROM e.erp_time_lines
                   WHERE work_date BETWEEN DATE '{f}' AND DATE '{t}') e
               ON e.entry_id = COALESCE(p.entry_id, l.entry_id)"""
    )
    rows = con.execute("SELECT count(*) FROM floor").fetchone()[0]
    con.close()
    return rows


def workbook_floor(work: Path) -> int:
    """An openpyxl write-only dump of the workbooks' rows (per scope), no styling."""
    import duckdb
    import openpyxl

    con = duckdb.connect(str(_staging(work)), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    scopes = [
        r[0]
        for r in con.sql(
            "SELECT DISTINCT legal_entity FROM rec_kpis WHERE legal_entity NOT IN ('(all)', '(none)')"
        ).fetchall()
    ]
    rows = 0
    for scope in [None, *sorted(s for s in scopes if s)]:
        wb = openpyxl.Workbook(write_only=True)
        for table in ("rec_lines", "rec_totals", "rec_invoices"):
            ws = wb.create_sheet(table)
            where = "" if scope is None else " WHERE legal_entity = ?"
            cols = ", ".join(  # Excel holds no time zones: timestamps as UTC wall time
                f'CAST("{c}" AS TIMESTAMP)' if t == "TIMESTAMP WITH TIME ZONE" else f'"{c}"'
                for c, t, *_ in con.execute(f"DESCRIBE {table}").fetchall()
            )
            cur = con.execute(
                f"SELECT {cols} FROM {table}{where}", [] if scope is None else [scope]
            )
            ws.append([d[0] for d in cur.description])
            for row in cur.fetchall():
                ws.append(row)
                rows += 1
        wb.save(work / f"floor_{scope or 'all'}.xlsx")
    con.close()
    return rows


STAGE_FNS: dict[str, tuple[Callable[[Path], int], Callable[[Path], int]]] = {
    "land": (land, land_floor),
    "validate": (validate, validate_floor),
    "post": (post, post_floor),
    "reconcile": (reconcile_stage, reconcile_floor),
    "workbook": (workbook, workbook_floor),
}
PREPARE: dict[str, Callable[[Path], None]] = {
    "validate": _validate_floor_prepare,
    "post": _post_floor_prepare,
}


# -- measuring ------------------------------------------------------------------------------------


def _child(fn_name: str, work: str, queue) -> None:
    fn = globals()[fn_name]
    w, c = time.perf_counter(), time.process_time()
    rows = fn(Path(work))
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    queue.put({"wall": wall, "cpu": cpu, "rows": rows, "rss": rss})


def measured(fn: Callable[[Path], object], work: Path) -> dict:
    """Run `fn(work)` in a fresh process: wall and CPU seconds, rows, peak RSS (GB)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=_child, args=(fn.__name__, str(work), queue))
    p.start()
    p.join()
    if p.exitcode != 0:
        raise SystemExit(f"{fn.__name__} failed (exit {p.exitcode})")
    return queue.get()


def _run_untimed(work: Path, fn_name: str) -> None:
    globals()[fn_name](work)


def _untimed(fn: Callable[..., None], work: Path, *args) -> None:
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=fn, args=(work, *args))
    p.start()
    p.join()
    if p.exitcode != 0:
        raise SystemExit(f"{fn.__name__} failed (exit {p.exitcode})")


def _generate(out: Path, n: int) -> None:
    from connectors.sample_data import write_sample

    write_sample(out, n, fmt="csv", seed=1, bad_share=0.01)


def one_run(
    base: Path, generated: Path, r: int, stages: tuple[str, ...] = STAGES
) -> dict[str, dict]:
    work = base / f"run{r}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(generated, work / "inbox")
    (work / "generated").symlink_to(generated)
    (work / "reports").mkdir()
    os.environ["STAGEPOST_DATA_DIR"] = str(work / "data")  # previews, scratch: per run
    out: dict[str, dict] = {}
    last = max(STAGES.index(s) for s in stages)
    for stage in STAGES[: last + 1]:
        fn, floor_fn = STAGE_FNS[stage]
        if stage not in stages:  # a later stage needs what it writes
            _untimed(_run_untimed, work, fn.__name__)
            continue
        if stage in PREPARE:
            _untimed(PREPARE[stage], work)
        fl = measured(floor_fn, work)
        st = measured(fn, work)
        out[stage] = {**st, "floor": fl["wall"], "floor_cpu": fl["cpu"], "floor_rss": fl["rss"]}
        print(
            f"  run {r + 1} {stage:9s} {st['wall']:7.2f} s (cpu {st['cpu']:7.2f}, "
            f"{st['rss']:.2f} GB)  floor {fl['wall']:6.2f} s  ratio {st['wall'] / fl['wall']:.2f}",
            flush=True,
        )
    shutil.rmtree(work, ignore_errors=True)
    return out


def _mmm(xs: list[float], fmt: str = "{:.2f}") -> str:
    return " / ".join(fmt.format(x) for x in (min(xs), statistics.median(xs), max(xs)))


def report(n: int, runs: list[dict[str, dict]], stages: tuple[str, ...] = STAGES) -> None:
    print(f"\n{n:,} entries, {len(runs)} run(s); min / median / max")
    head = (
        f"| {'stage':9s} | {'wall s':22s} | {'cpu s (med)':11s} | {'rows/s (med)':12s} "
        f"| {'peak RSS GB (max)':17s} | {'floor s (med)':13s} | {'ratio':18s} "
        f"| {'cpu ratio (med)':15s} |"
    )
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.strip("|").split("|")) + "|")
    for stage in [*stages, "total"]:
        if stage == "total":
            walls = [sum(r[s]["wall"] for s in stages) for r in runs]
            cpus = [sum(r[s]["cpu"] for s in stages) for r in runs]
            floors = [sum(r[s]["floor"] for s in stages) for r in runs]
            fcpus = [sum(r[s]["floor_cpu"] for s in stages) for r in runs]
            rss = max(r[s]["rss"] for r in runs for s in stages)
            rate = f"{n / statistics.median(walls):,.0f}"
        else:
            walls = [r[stage]["wall"] for r in runs]
            cpus = [r[stage]["cpu"] for r in runs]
            floors = [r[stage]["floor"] for r in runs]
            fcpus = [r[stage]["floor_cpu"] for r in runs]
            rss = max(r[stage]["rss"] for r in runs)
            rate = f"{statistics.median(r[stage]['rows'] / r[stage]['wall'] for r in runs):,.0f}"
        ratios = [w / f for w, f in zip(walls, floors, strict=True)]
        cpu_ratio = statistics.median(c / f for c, f in zip(cpus, fcpus, strict=True))
        print(
            f"| {stage:9s} | {_mmm(walls):22s} | {statistics.median(cpus):11.2f} | {rate:>12s} "
            f"| {rss:17.2f} | {statistics.median(floors):13.2f} | {_mmm(ratios):18s} "
            f"| {cpu_ratio:15.2f} |"
        )
    worst = {s: statistics.median(r[s]["wall"] / r[s]["floor"] for r in runs) for s in stages}
    over = [s for s, v in worst.items() if v > TARGET]
    peak = max(r[s]["rss"] for r in runs for s in stages)
    print(
        f"stages over {TARGET}x their floor (median): {', '.join(over) or 'none'}; "
        f"peak RSS {peak:.2f} GB (target < {RSS_TARGET_GB} GB); DuckDB memory limit: "
        f"{os.environ.get('STAGEPOST_DUCKDB_MEMORY_LIMIT', 'stagepost default')}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="1000000,5000000", help="entries, comma-separated")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp one)")
    ap.add_argument(
        "--stages",
        default=",".join(STAGES),
        help="stages to measure, comma-separated (the ones before them run untimed)",
    )
    args = ap.parse_args()
    stages = tuple(s for s in STAGES if s in args.stages.split(","))
    unknown = set(args.stages.split(",")) - set(STAGES)
    if unknown or not stages:
        ap.error(f"--stages: unknown {sorted(unknown)}; choose from {', '.join(STAGES)}")
    base = args.dir or Path(tempfile.mkdtemp(prefix="stagepost-e2e-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"load: {os.getloadavg()}; cores: {os.cpu_count()}; work folder {base}")
    for n in (int(s) for s in args.sizes.split(",")):
        generated = base / f"generated-{n}"
        if not generated.is_dir():
            t = time.perf_counter()
            ctx = multiprocessing.get_context("spawn")
            p = ctx.Process(target=_generate, args=(generated, n))
            p.start()
            p.join()
            print(f"generated {n:,} entries in {time.perf_counter() - t:.1f} s", flush=True)
        runs = [one_run(base, generated, r, stages) for r in range(args.repeat)]
        report(n, runs, stages)
        print(f"load after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
