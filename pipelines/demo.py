"""`./dev demo`: the main job end to end on generated sample data, embedded DuckDB staging.

Generates a seeded PSA export into the inbox (unless the inbox already has files), runs
`main_job` in-process against the Dagster instance in $DAGSTER_HOME (so the run shows in the
UI afterwards), and prints what landed where.
"""

from __future__ import annotations

import argparse
import shutil
import time

from dagster import DagsterInstance

from pipelines.resources import data_dir


def _summary(db_url: str | None = None) -> str:
    from staging_models.db import redact_url, staging_db
    from staging_models.validation import conservation

    db = staging_db(db_url)
    loads = db.query_df(
        """SELECT dataset, COUNT(*) AS files, SUM(rows_read) AS rows_read,
                  SUM(rows_new_version) AS new_versions,
                  SUM(rows_unchanged) AS unchanged, SUM(rows_stale) AS stale
           FROM loads WHERE status = 'landed' GROUP BY dataset ORDER BY dataset"""
    )
    cons = conservation(db).set_index("dataset")
    lines = [
        f"{'dataset':<14}{'files':>6}{'read':>10}{'versions':>10}{'valid':>10}{'quarant.':>10}"
        f"{'not post.':>10}"
    ]
    for r in loads.itertuples(index=False):
        c = cons.loc[r.dataset]
        lines.append(
            f"{r.dataset:<14}{r.files:>6}{int(r.rows_read):>10}{int(r.new_versions):>10}"
            f"{c['valid']:>10}{c['quarantined']:>10}{c['not_postable']:>10}"
        )
    lines.append(f"every row accounted for: {bool(cons['ok'].all())}")
    lines.append(f"staging database: {redact_url(db.url)}")
    return "\n".join(lines)


def _posting_summary() -> str:
    from staging_models.db import staging_db

    db = staging_db()
    led = db.query_df(
        "SELECT state, COUNT(*) AS n, SUM(hours) AS hours FROM posting_ledger GROUP BY state"
    )
    inv = db.query_df("SELECT state, COUNT(*) AS n FROM invoice_ledger GROUP BY state")
    lines = [f"time lines {r.state}: {r.n} ({r.hours} h)" for r in led.itertuples(index=False)]
    lines += [f"invoices {r.state}: {r.n}" for r in inv.itertuples(index=False)]
    from pipelines.erp_resources import default_erp_url

    lines.append(f"ERP (SQL interface tables): {default_erp_url()}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entries", type=int, default=20_000, help="time entries to generate")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bad-share", type=float, default=0.01, help="share of bad time-entry rows")
    ap.add_argument("--fresh", action="store_true", help="delete the data folder first")
    ap.add_argument("--no-post", action="store_true", help="skip the posting window")
    args = ap.parse_args(argv)

    root = data_dir()
    if args.fresh and root.exists():
        shutil.rmtree(root)
    inbox = root / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    archive = inbox / "archive"
    first_time = not any(p.is_file() for p in inbox.iterdir()) and not archive.exists()
    if first_time:
        from connectors.sample_data import write_sample

        files = write_sample(
            inbox,
            args.entries,
            fmt="csv",
            seed=args.seed,
            bad_share=args.bad_share,
            corrections_share=0.02,
        )
        print(f"generated {len(files)} sample files into {inbox}")

    from pipelines.definitions import defs

    instance = DagsterInstance.get()
    result = defs.resolve_job_def("main_job").execute_in_process(
        instance=instance, raise_on_error=False
    )
    print(
        f"\nmain_job run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'} "
        f"in {time.perf_counter() - started:.1f} s"
    )
    print(_summary())
    if result.success and not args.no_post:
        from dagster import RunConfig

        from assets.posting import POSTING_ASSET, PostingWindowConfig

        window = defs.resolve_job_def("posting_window_job").execute_in_process(
            run_config=RunConfig(
                ops={
                    POSTING_ASSET: PostingWindowConfig(dry_run=False, note="demo", operator="demo")
                }
            ),
            instance=instance,
            raise_on_error=False,
        )
        print(
            f"\nposting_window_job run {window.run_id}: "
            f"{'SUCCESS' if window.success else 'FAILURE'}"
        )
        print(_posting_summary())
        rec = defs.resolve_job_def("reconciliation_job").execute_in_process(
            instance=instance, raise_on_error=False
        )
        print(f"\nreconciliation_job run {rec.run_id}: {'SUCCESS' if rec.success else 'FAILURE'}")
        for mat in rec.asset_materializations_for_node("reconciliation_workbook"):
            md = mat.metadata
            for key in ("path", "download"):
                if key in md:
                    print(f"workbook {key}: {md[key].value}")
    reports = root / "reports"
    print(f"reports folder: {reports}")
    print("open the Dagster UI on the same data: ./dev ui   (then http://127.0.0.1:3000)")
    return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
