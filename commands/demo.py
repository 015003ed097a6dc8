"""`./dev demo`: the main job end to end on generated sample data, embedded DuckDB staging.

Generates a seeded PSA export into the inbox (unless the inbox already has files), runs
`main_job`, a posting window and a reconciliation in-process against the Dagster instance in
$DAGSTER_HOME (so the runs show in the UI afterwards), and prints a short summary whose
figures add up. Dagster's own log lines go to a file under `<data>/logs/`, named at the end.
A setting that does not work stops the demo with one line naming the variable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from pydantic import SecretStr

from config.settings import SettingsError, current
from staging_models.db import data_dir
from staging_models.ledger_tables import ledger_rows

Say = Callable[..., None]


class SettingError(Exception):
    """A setting the demo cannot work with; the message names the environment variable."""


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def _shown(url: str) -> str:
    """A URL as it may be printed: password masked, or as given when it does not parse."""
    from staging_models.db import redact_url

    try:
        return redact_url(url)
    except Exception:  # not a URL at all: the text itself is what was set
        return url


def _reveal(secret: SecretStr | None) -> str | None:
    """The demo connects itself (no Dagster resource in between), so it needs the value."""
    return secret.get_secret_value() if secret is not None else None


def check_settings() -> None:
    """Open the staging database and the ERP as configured before anything runs, so a bad
    setting is one line naming its variable, not a stack trace per step."""
    from resources.erp import ErpResource
    from staging_models.db import default_staging_url, staging_db, url_with_password

    s = current()  # values already checked; here: do they work?
    url = s.staging_url or default_staging_url()
    try:
        staging_db(url_with_password(url, _reveal(s.staging_password))).scalar("SELECT 1")
    except Exception as e:
        raise SettingError(
            f"STAGEPOST_STAGING_URL={_shown(url)} does not work: {_first_line(e)}"
        ) from None
    kind, erp_url = s.erp_kind, s.erp_url
    try:
        target = ErpResource(
            kind=kind,
            url=erp_url,
            password=_reveal(s.erp_password),
            database=s.erp_database,
            user=s.erp_user,
        ).get_target()
        close = getattr(target, "close", None)
        if close:
            close()
    except Exception as e:
        shown = f"STAGEPOST_ERP_URL={_shown(erp_url)}" if erp_url else "STAGEPOST_ERP_URL (unset)"
        raise SettingError(
            f"{shown} with STAGEPOST_ERP_KIND={kind} does not work: {_first_line(e)}"
        ) from None


@contextmanager
def logs_to(path: Path) -> Iterator[tuple[IO[str], IO[str]]]:
    """Send everything written to stdout and stderr (Dagster's console log, warnings, native
    libraries) to `path`; yield the terminal's stdout and stderr for the summary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    out = os.fdopen(os.dup(saved[0]), "w", buffering=1)
    err = os.fdopen(os.dup(saved[1]), "w", buffering=1)
    with open(path, "a", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield out, err
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            out.close()
            err.close()


# -- figures from staging --------------------------------------------------------------------------


def _n(x: Any) -> str:
    return f"{int(x or 0):,}"


def _landed_files(db) -> int:
    return int(db.scalar("SELECT COUNT(*) FROM loads WHERE status = 'landed'") or 0)


def _staging_tables(db) -> tuple[list[str], list[str], bool]:
    """Rows read (read = new versions + unchanged + stale) and row versions by state
    (versions = valid + quarantined + not postable + superseded [+ pending]) per dataset."""
    from staging_models.validation import conservation

    loads = db.query_df(
        """SELECT dataset, COUNT(*) AS files, SUM(rows_read) AS rows_read,
                  SUM(rows_new_version) AS new_versions, SUM(rows_unchanged) AS unchanged,
                  SUM(rows_stale) AS stale
           FROM loads WHERE status = 'landed' GROUP BY dataset ORDER BY dataset"""
    )
    cons = conservation(db).set_index("dataset")
    pending = bool((cons["pending"] > 0).any())
    read = [
        f"  {'dataset':<14}{'files':>6}{'rows read':>11}{'new versions':>14}{'unchanged':>11}"
        f"{'stale':>8}"
    ]
    for r in loads.itertuples(index=False):
        read.append(
            f"  {r.dataset:<14}{_n(r.files):>6}{_n(r.rows_read):>11}{_n(r.new_versions):>14}"
            f"{_n(r.unchanged):>11}{_n(r.stale):>8}"
        )
    states = [
        f"  {'dataset':<14}{'versions':>9}{'valid':>9}{'quarantined':>13}{'not postable':>14}"
        f"{'superseded':>12}" + (f"{'pending':>9}" if pending else "")
    ]
    for name in loads["dataset"]:
        c = cons.loc[name]
        states.append(
            f"  {name:<14}{_n(c['versions']):>9}{_n(c['valid']):>9}{_n(c['quarantined']):>13}"
            f"{_n(c['not_postable']):>14}{_n(c['superseded']):>12}"
            + (f"{_n(c['pending']):>9}" if pending else "")
        )
    return read, states, bool(cons["ok"].all())


def _window(db, run_id: str) -> dict[str, Any]:
    """What the posting window of `run_id` did, from its ledger rows."""
    row = db.query_df(
        "SELECT window_id, status, message FROM posting_windows WHERE run_id = :r "
        "ORDER BY started_at DESC LIMIT 1",
        {"r": run_id},
    )
    if row.empty:
        return {}
    w = row.iloc[0].to_dict()
    lines = db.query_df(
        f"""SELECT state, kind, COUNT(*) AS n, SUM(hours) AS hours
           FROM {ledger_rows("posting_ledger")} l WHERE window_id = :w GROUP BY state, kind""",
        {"w": w["window_id"]},
    )
    confirmed = lines[lines["state"] == "confirmed"]
    w["posts"] = int(confirmed.loc[confirmed["kind"] == "post", "n"].sum())
    w["reversals"] = int(confirmed.loc[confirmed["kind"] == "reversal", "n"].sum())
    w["hours"] = sum((h for h in confirmed["hours"] if h is not None), Decimal(0))
    w["time_rejected"] = int(lines.loc[lines["state"] == "rejected", "n"].sum())
    w["time_held"] = int(lines.loc[lines["state"] == "held", "n"].sum())
    for key, ledger in (("invoices", "invoice_ledger"), ("expense_lines", "expense_ledger")):
        w[key] = int(
            db.scalar(
                f"SELECT COUNT(*) FROM {ledger_rows(ledger)} l "
                "WHERE window_id = :w AND state = 'confirmed'",
                {"w": w["window_id"]},
            )
            or 0
        )
    return w


def _posted_entries(db, start: date, end: date) -> tuple[int, int]:
    """Time entries in the ERP now (confirmed posts less confirmed reversals), with work dates
    inside [start, end] and outside."""
    df = db.query_df(
        f"""SELECT CASE WHEN work_date BETWEEN :a AND :b THEN 1 ELSE 0 END AS inside,
                  SUM(CASE kind WHEN 'post' THEN 1 ELSE -1 END) AS n
           FROM {ledger_rows("posting_ledger")} l WHERE state = 'confirmed' GROUP BY 1""",
        {"a": start, "b": end},
    )
    by = dict(zip(df["inside"], df["n"], strict=True))
    return int(by.get(1, 0) or 0), int(by.get(0, 0) or 0)


def _status(result) -> str:
    return "SUCCESS" if result.success else "FAILURE"


# -- the demo -------------------------------------------------------------------------------------


def _generate(inbox: Path, args: argparse.Namespace) -> int:
    archive = inbox / "archive"
    if any(p.is_file() for p in inbox.iterdir()) or archive.exists():
        return 0
    from connectors.sample_data import write_sample

    files = write_sample(
        inbox,
        args.entries,
        fmt="csv",
        seed=args.seed,
        bad_share=args.bad_share,
        corrections_share=0.02,
    )
    return len(files)


def run(args: argparse.Namespace, root: Path, log_path: Path, say: Say) -> int:
    from dagster import DagsterInstance, RunConfig

    from assets.posting import POSTING_ASSET, PostingWindowConfig
    from assets.reconciliation import ReconciliationConfig, resolve_period
    from pipelines.definitions import defs
    from pipelines.jobs import main_job
    from pipelines.posting_jobs import posting_window_job
    from pipelines.reconciliation_jobs import reconciliation_job
    from resources.erp import default_erp_url
    from staging_models.db import redact_url, staging_db

    inbox = root / "inbox"
    generated = _generate(inbox, args)
    db = staging_db()
    files_before = _landed_files(db)
    instance = DagsterInstance.get()
    started = time.perf_counter()
    main = defs.resolve_job_def(main_job.name).execute_in_process(
        instance=instance, raise_on_error=False
    )
    landed = _landed_files(db) - files_before

    say(f"stagepost demo: data folder {root}")
    say(
        f"\n1. Land and validate: main_job {_status(main)} in {time.perf_counter() - started:.1f} s"
    )
    if generated:
        say(f"  generated {generated} sample PSA files ({args.entries:,} time entries) in {inbox}")
    if landed:
        say(f"  landed {landed} new file(s); figures below are all files landed so far")
    else:
        say("  nothing new: the inbox had no new files; figures below are the totals so far")
    read, states, ok = _staging_tables(db)
    say("  Rows read = new versions + unchanged + stale:")
    for line in read:
        say(line)
    say("  Row versions by state = valid + quarantined + not postable + superseded:")
    for line in states:
        say(line)
    say(f"  every row accounted for: {'yes' if ok else 'NO (see the validation checks)'}")
    say(f"  staging database: {redact_url(db.url)}")
    if not main.success or args.no_post:
        return _close(main.success, root, log_path, say)

    window_run = defs.resolve_job_def(posting_window_job.name).execute_in_process(
        run_config=RunConfig(
            ops={POSTING_ASSET: PostingWindowConfig(dry_run=False, note="demo", operator="demo")}
        ),
        instance=instance,
        raise_on_error=False,
    )
    w = _window(db, window_run.run_id)
    say(f"\n2. Posting window: posting_window_job {_status(window_run)}")
    if w:
        say(f"  window {w['window_id']}: {w['message']}")
        time_lines = w["posts"] + w["reversals"]
        documents = time_lines + w["invoices"] + w["expense_lines"]
        if documents == 0:
            say("  nothing new to post")
        say(
            f"  documents confirmed {_n(documents)} = time lines "
            f"{_n(time_lines)} (posts {_n(w['posts'])} + reversals {_n(w['reversals'])}, "
            f"{w['hours']:,} h net) + invoices {_n(w['invoices'])} "
            f"+ expense lines {_n(w['expense_lines'])}"
        )
        if w["time_rejected"] or w["time_held"]:
            say(f"  time lines rejected {_n(w['time_rejected'])}, held {_n(w['time_held'])}")
    say(f"  ERP (SQL interface tables): {redact_url(default_erp_url())}")

    period = resolve_period(ReconciliationConfig(), datetime.now(UTC).date())
    rec = defs.resolve_job_def(reconciliation_job.name).execute_in_process(
        run_config=RunConfig(
            ops={
                "reconciliation": ReconciliationConfig(
                    date_from=period.date_from.isoformat(), date_to=period.date_to.isoformat()
                )
            }
        ),
        instance=instance,
        raise_on_error=False,
    )
    say(f"\n3. Reconciliation: reconciliation_job {_status(rec)}")
    say(
        f"  period: work dates {period.date_from} to {period.date_to} (the default: this and "
        "the two previous months); entries outside it are not compared"
    )
    inside, outside = _posted_entries(db, period.date_from, period.date_to)
    say(
        f"  time entries in the ERP {_n(inside + outside)} = work dates in the period "
        f"{_n(inside)} + outside it {_n(outside)}"
    )
    counts = _rec_counts(rec)
    if counts:
        classes = dict(counts.get("entries_by_class", {}))
        keyless = classes.pop("quarantined_without_key", 0)
        say(
            f"  time entries in the period {_n(sum(classes.values()))} = "
            + " + ".join(f"{k.replace('_', ' ')} {_n(v)}" for k, v in sorted(classes.items()))
        )
        if keyless:
            say(f"  quarantined rows without an entry id or readable date: {_n(keyless)}")
        invoices = dict(counts.get("invoices_by_class", {}))
        if invoices:
            say(
                f"  invoices in the period {_n(sum(invoices.values()))} = "
                + " + ".join(f"{k.replace('_', ' ')} {_n(v)}" for k, v in sorted(invoices.items()))
            )
    for mat in rec.asset_materializations_for_node("plan_vs_actual")[:1]:
        md = {k: v.value for k, v in mat.metadata.items()}
        say(
            f"  resource plans vs approved time ({md['weeks']}): planned {md['planned_hours']} h, "
            f"actual {md['actual_hours']} h, utilization {md['utilization']}; people over plan "
            f"{md['people_over_plan']}, under plan {md['people_under_plan']}"
        )
    for mat in rec.asset_materializations_for_node("reconciliation_workbook")[:1]:
        if "path" in mat.metadata:
            say(f"  workbook: {mat.metadata['path'].value}")
    if (
        generated == 0
        and landed == 0
        and w
        and w["posts"] + w["reversals"] + w["invoices"] + w["expense_lines"] == 0
    ):
        say("\nNothing new happened in this run: no new files, nothing posted.")
    return _close(main.success and window_run.success and rec.success, root, log_path, say)


def _rec_counts(rec) -> dict[str, dict[str, int]]:
    """The reconciliation's entries and invoices per class (rec_kpis metadata)."""
    for mat in rec.asset_materializations_for_node("reconciliation"):
        if mat.asset_key.path[-1] == "rec_kpis" and "entries_by_class" in mat.metadata:
            return {
                key: dict(mat.metadata[key].value)
                for key in ("entries_by_class", "invoices_by_class")
                if key in mat.metadata
            }
    return {}


def _close(ok: bool, root: Path, log_path: Path, say: Say) -> int:
    say(f"\nreports folder: {root / 'reports'}")
    say(f"Dagster's log of these runs: {log_path}")
    say("open the Dagster UI on the same data: ./dev ui   (then http://127.0.0.1:3000)")
    say(
        "and the finance desk (worklist, windows, downloads) at http://127.0.0.1:3001, "
        "after creating a user: .venv/bin/stagepost-desk-user add me --role admin"
    )
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entries", type=int, default=20_000, help="time entries to generate")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bad-share", type=float, default=0.01, help="share of bad time-entry rows")
    ap.add_argument("--fresh", action="store_true", help="delete the data folder first")
    ap.add_argument("--no-post", action="store_true", help="skip the posting window")
    args = ap.parse_args(argv)

    try:
        current()  # every STAGEPOST_* value checked before anything is touched
    except SettingsError as e:
        print(f"stagepost demo: {e}", file=sys.stderr)
        return 2
    root = data_dir()
    try:
        if args.fresh and root.exists():
            shutil.rmtree(root)
        (root / "inbox").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"stagepost demo: STAGEPOST_DATA_DIR={root} cannot be used: {e}", file=sys.stderr)
        return 2
    log_path = root / "logs" / f"demo-{datetime.now(UTC):%Y%m%dT%H%M%S}.log"
    with logs_to(log_path) as (out, err):
        try:
            check_settings()
            return run(args, root, log_path, lambda *a: print(*a, file=out))
        except SettingError as e:
            print(f"stagepost demo: {e}", file=err)
            return 2
        except Exception as e:
            traceback.print_exc()  # into the log
            print(
                f"stagepost demo failed: {type(e).__name__}: {_first_line(e)} "
                f"(details in {log_path})",
                file=err,
            )
            return 1


if __name__ == "__main__":
    raise SystemExit(main())
