"""Seeded, realistic PSA sample exports for tests, demos and benchmarks.

`generate_frames` returns every dataset of the canonical PSA export as pandas
frames of strings (exactly as they would appear in the file, `None` for an
empty cell), together with a file of later corrections and the ground truth
of injected bad rows. `write_sample` writes the files (`<dataset>_<tag>.csv`,
`.xlsx` or `.parquet`, plus `time_entries_<tag>_corrections.<ext>`).
Generation is vectorised (numpy columns, Arrow string kernels); writing
streams the time entries in chunks, so millions of entries take seconds.
Every column is text in every format (xlsx cells are text, Parquet columns
are strings), so one parser serves all three and bad values survive.

Rate resolution the clean data is consistent with: for a billable entry with
a blank bill_rate, the project's rate card row with `valid_from <= work_date
<= valid_to` (blank valid_to: open-ended) applies, preferring a row for the
employee over a row for the employee's role over a row for anyone (blank
employee and role). Validity periods never overlap for the same project and
employee/role. A filled bill_rate equals the rate the card gives, or the
entity's list rate on projects without a rate card (fixed fee, milestone).

Command line:
    python -m connectors.sample_data --out DIR --entries N --seed S --format csv
        [--bad-share 0.01] [--bad-kinds k1,k2] [--as-of YYYY-MM-DD]
        [--corrections-share 0.02] [--tag sample] [--truth FILE] [--deals N]

`--deals N` (or `write_deals`) also writes N CRM deals and the project templates for the
project set-up (`crm_deals_<tag>`, `project_templates_<tag>`); without it nothing changes.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa

from connectors.sample_gen.bad import BAD_KINDS
from connectors.sample_gen.build import Plan, build_plan, check_options
from connectors.sample_gen.deals import deals_table, templates_table
from connectors.sample_gen.expenses import EXPENSE_BAD_KINDS, EXPENSE_BAD_RULES
from connectors.sample_gen.invoices import INVOICE_COLUMNS
from connectors.sample_gen.tables import COLUMNS as _COLUMNS
from connectors.sample_gen.writers import FORMATS, XLSX_MAX_ROWS, write_dataset
from connectors.sources.canonical import DATASETS as CANONICAL

__all__ = [
    "BAD_KINDS",
    "COLUMNS",
    "EXPENSE_BAD_KINDS",
    "EXPENSE_BAD_RULES",
    "DATASETS",
    "FORMATS",
    "XLSX_MAX_ROWS",
    "SampleData",
    "SampleTables",
    "WrittenFile",
    "generate_frames",
    "generate_tables",
    "write_deals",
    "write_sample",
]

DATASETS: tuple[str, ...] = (
    "time_entries",
    "employees",
    "projects",
    "project_tasks",
    "rate_cards",
    "invoices",
    "expenses",
    "assignments",
    "fx_rates",
)
COLUMNS: dict[str, tuple[str, ...]] = {
    **_COLUMNS,
    "invoices": INVOICE_COLUMNS,
    "expenses": CANONICAL["expenses"].layout,
}
_TAG = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class SampleTables:
    """The sample as Arrow tables of strings (same content as `SampleData`)."""

    time_entries: pa.Table
    employees: pa.Table
    projects: pa.Table
    project_tasks: pa.Table
    rate_cards: pa.Table
    invoices: pa.Table
    expenses: pa.Table
    assignments: pa.Table
    fx_rates: pa.Table
    corrections: pa.Table
    bad_rows: pa.Table
    expense_bad_rows: pa.Table
    as_of: date

    def datasets(self) -> dict[str, pa.Table]:
        return {name: getattr(self, name) for name in DATASETS}


@dataclass
class SampleData:
    """One pandas frame per dataset, all values strings (None = empty cell).

    `corrections` has the time_entries columns. `bad_rows` is the ground truth:
    `row_index` (0-based position in `time_entries` = data row of the file),
    `entry_id` (None where the row has none) and `kind` (one of BAD_KINDS);
    `expense_bad_rows` the same for `expenses` (`expense_id`, `kind` of EXPENSE_BAD_KINDS,
    each breaking the rule EXPENSE_BAD_RULES names).
    """

    time_entries: pd.DataFrame
    employees: pd.DataFrame
    projects: pd.DataFrame
    project_tasks: pd.DataFrame
    rate_cards: pd.DataFrame
    invoices: pd.DataFrame
    expenses: pd.DataFrame
    assignments: pd.DataFrame
    fx_rates: pd.DataFrame
    corrections: pd.DataFrame
    bad_rows: pd.DataFrame
    expense_bad_rows: pd.DataFrame
    as_of: date

    def datasets(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in DATASETS}


@dataclass(frozen=True)
class WrittenFile:
    """One file written: which dataset, where, how many data rows, seconds taken."""

    key: str
    path: Path
    rows: int
    seconds: float


def _plan(
    n_entries: int,
    seed: int,
    as_of: date | None,
    bad_share: float,
    bad_kinds: Sequence[str] | None,
    corrections_share: float,
) -> Plan:
    kinds = check_options(n_entries, bad_share, bad_kinds, corrections_share)
    as_of = as_of or datetime.now(UTC).date()
    return build_plan(n_entries, seed, as_of, bad_share, kinds, corrections_share)


def generate_tables(
    n_entries: int,
    seed: int = 42,
    as_of: date | None = None,
    bad_share: float = 0.0,
    bad_kinds: Sequence[str] | None = None,
    corrections_share: float = 0.0,
) -> SampleTables:
    """The sample as Arrow tables; see `generate_frames` for the options."""
    plan = _plan(n_entries, seed, as_of, bad_share, bad_kinds, corrections_share)
    return SampleTables(
        time_entries=pa.concat_tables(plan.time_entry_batches()),
        **plan.small,
        corrections=plan.corrections,
        bad_rows=plan.bad_rows,
        expense_bad_rows=plan.expense_bad_rows,
        as_of=plan.as_of,
    )


def generate_frames(
    n_entries: int,
    seed: int = 42,
    as_of: date | None = None,
    bad_share: float = 0.0,
    bad_kinds: Sequence[str] | None = None,
    corrections_share: float = 0.0,
) -> SampleData:
    """A deterministic sample of `n_entries` time entries and consistent master data.

    `as_of` is the export date (default: today, UTC); entries fall in the 90
    days before it. `bad_share` of the entries are replaced by bad rows whose
    kinds are dealt round-robin from `bad_kinds` (default: all of BAD_KINDS;
    a chosen `over_24_per_day` kind takes at least 3 rows, and each
    `duplicate_conflict` row also flags the clean row it duplicates).
    `corrections_share` of the entries get a later version in `corrections`.
    A positive share always yields at least one row. Master data and clean
    entries depend only on `seed`, `n_entries` and `as_of`.
    """
    t = generate_tables(n_entries, seed, as_of, bad_share, bad_kinds, corrections_share)
    frames = {
        f.name: getattr(t, f.name).to_pandas()
        for f in fields(t)
        if isinstance(getattr(t, f.name), pa.Table)
    }
    return SampleData(**frames, as_of=t.as_of)


def _check_xlsx(fmt: str, n_entries: int) -> None:
    if fmt == "xlsx" and n_entries > XLSX_MAX_ROWS:
        raise ValueError(
            f"xlsx output is limited to {XLSX_MAX_ROWS:,} time entries (asked for "
            f"{n_entries:,}): openpyxl is too slow beyond that; use csv or parquet"
        )


def _write_plan(plan: Plan, out_dir: Path, fmt: str, tag: str) -> list[WrittenFile]:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not _TAG.match(tag):
        raise ValueError(f"tag {tag!r} may only contain letters, digits, '_' and '-'")
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [("time_entries", f"time_entries_{tag}.{fmt}", plan.time_entry_batches)]
    jobs += [
        (name, f"{name}_{tag}.{fmt}", lambda t=table: [t]) for name, table in plan.small.items()
    ]
    if plan.corrections.num_rows:
        name = f"time_entries_{tag}_corrections.{fmt}"
        jobs.append(("corrections", name, lambda: [plan.corrections]))
    written = []
    for key, name, batches in jobs:
        start = time.perf_counter()
        rows = write_dataset(batches(), out_dir / name, fmt, key)
        written.append(WrittenFile(key, out_dir / name, rows, time.perf_counter() - start))
    return written


def write_sample(
    out_dir: Path,
    n_entries: int,
    fmt: str = "csv",
    tag: str = "sample",
    *,
    seed: int = 42,
    as_of: date | None = None,
    bad_share: float = 0.0,
    bad_kinds: Sequence[str] | None = None,
    corrections_share: float = 0.0,
    truth_path: Path | None = None,
) -> dict[str, Path]:
    """Generate a sample and write one file per dataset (+ corrections) into `out_dir`.

    Returns the paths by dataset name (`corrections` for the corrections file,
    written only when there are corrections). `truth_path`, if given, receives
    the bad-row ground truth as CSV. xlsx is refused above XLSX_MAX_ROWS
    entries; a sheet is never silently truncated.
    """
    _check_xlsx(fmt, n_entries)
    plan = _plan(n_entries, seed, as_of, bad_share, bad_kinds, corrections_share)
    written = _write_plan(plan, Path(out_dir), fmt, tag)
    if truth_path is not None:
        write_dataset([plan.bad_rows], Path(truth_path), "csv", "bad_rows")
        expense_truth = Path(truth_path).with_name(f"{Path(truth_path).stem}_expenses.csv")
        write_dataset([plan.expense_bad_rows], expense_truth, "csv", "expense_bad_rows")
    return {w.key: w.path for w in written}


def write_deals(
    out_dir: Path,
    n_deals: int,
    fmt: str = "csv",
    tag: str = "sample",
    *,
    seed: int = 42,
    as_of: date | None = None,
) -> dict[str, Path]:
    """Write `n_deals` CRM deals and the project templates (the project set-up's inputs),
    consistent with `write_sample`'s legal entities and currencies."""
    as_of = as_of or datetime.now(UTC).date()
    out = {}
    for name, table in (
        ("project_templates", templates_table()),
        ("crm_deals", deals_table(n_deals, seed, as_of)),
    ):
        path = Path(out_dir) / f"{name}_{tag}.{fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_dataset([table], path, fmt, name)
        out[name] = path
    return out


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m connectors.sample_data", description="Write a seeded sample PSA export."
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--entries", type=int, required=True, help="number of time entries")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--format", choices=FORMATS, default="csv")
    p.add_argument("--tag", default="sample", help="file name tag: <dataset>_<tag>.<ext>")
    p.add_argument("--as-of", type=date.fromisoformat, default=None, help="export date YYYY-MM-DD")
    p.add_argument("--bad-share", type=float, default=0.0)
    p.add_argument("--bad-kinds", default=None, help=f"comma-separated, of: {','.join(BAD_KINDS)}")
    p.add_argument("--corrections-share", type=float, default=0.0)
    p.add_argument(
        "--truth", type=Path, default=None, help="write the bad-row ground truth CSV here"
    )
    p.add_argument(
        "--deals", type=int, default=0, help="also write this many CRM deals and the templates"
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; prints rows and seconds per file written."""
    a = _parse_args(argv)
    kinds = [k.strip() for k in a.bad_kinds.split(",") if k.strip()] if a.bad_kinds else None
    start = time.perf_counter()
    try:
        _check_xlsx(a.format, a.entries)
        plan = _plan(a.entries, a.seed, a.as_of, a.bad_share, kinds, a.corrections_share)
        gen_s = time.perf_counter() - start
        written = _write_plan(plan, a.out, a.format, a.tag)
        if a.truth is not None:
            write_dataset([plan.bad_rows], a.truth, "csv", "bad_rows")
        deals = (
            write_deals(a.out, a.deals, a.format, a.tag, seed=a.seed, as_of=plan.as_of)
            if a.deals
            else {}
        )
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"generated {a.entries:,} entries as of {plan.as_of} (seed {a.seed}) in {gen_s:.2f} s")
    for w in written:
        print(f"  {w.path}  {w.rows:>12,} rows  {w.seconds:7.2f} s")
    if a.truth is not None:
        print(f"  {a.truth}  {plan.bad_rows.num_rows:>12,} bad rows (ground truth)")
    for path in deals.values():
        print(f"  {path}  (project set-up)")
    print(f"total {time.perf_counter() - start:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
