"""Benchmark: reconciliation workbook writer vs a bare openpyxl write-only dump.

Both write the same N rows x 12 columns (str, Decimal, date, datetime, int), the
bare dump with `ws.append(row)` of plain values and no styling, the writer with
formats, header, filter, frozen panes, injection-safe text and a summary sheet.
Prints the median of `--repeat` runs of each and the ratio (target: <= 1.3).

    PYTHONPATH=$PWD /work/main/.venv/bin/python bench/workbook.py [--rows 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd

from reconciliation import workbook


def make_rows(n: int, seed: int = 7) -> pd.DataFrame:
    """Exception-sheet rows like the staging tables: ids, names, Decimal money/hours, dates."""
    rng = np.random.default_rng(seed)
    cents = rng.integers(-(10**7), 10**7, n)
    hours = rng.integers(25, 1_200, n)
    rates = rng.integers(5_000, 25_000, n)
    days = rng.integers(0, 365, n)
    seconds = rng.integers(0, 365 * 86_400, n)
    d0 = date(2026, 1, 1)
    t0 = datetime(2026, 1, 1)
    return pd.DataFrame(
        {
            "entry_id": np.arange(1, n + 1, dtype="int64"),
            "employee": [f"E{i % 750:05d}" for i in range(n)],
            "project": [f"PRJ-{i % 311:04d}" for i in range(n)],
            "task": [f"Task {i % 17}: delivery" for i in range(n)],
            "work_date": [d0 + timedelta(days=int(x)) for x in days],
            "hours": [Decimal(int(x)).scaleb(-2) for x in hours],
            "bill_rate": [Decimal(int(x)).scaleb(-2) for x in rates],
            "amount_variance": [Decimal(int(x)).scaleb(-2) for x in cents],
            "currency": rng.choice(["EUR", "USD", "GBP"], n).astype(object),
            "approved_at": [t0 + timedelta(seconds=int(x)) for x in seconds],
            "version": rng.integers(1, 5, n),
            "comment": rng.choice(["late approval", "=rate changed", "-", "ok"], n).astype(object),
        }
    )


def bare_dump(path: Path, df: pd.DataFrame) -> None:
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("rows")
    ws.append(list(df.columns))
    for row in df.itertuples(index=False, name=None):
        ws.append(row)
    wb.save(path)


def stagepost_write(path: Path, df: pd.DataFrame) -> None:
    workbook.write_workbook(
        path,
        title="Benchmark reconciliation",
        kpis=[("Rows", len(df)), ("Amount variance", Decimal("0.00"))],
        totals=pd.DataFrame({"currency": ["EUR"], "variance": [Decimal("0.00")]}),
        aging=pd.DataFrame(
            {"bucket": ["0-1"], "hours": [Decimal("1.00")], "amount": [Decimal("1.00")]}
        ),
        sheets={"Changed hours": df},
    )


def median_time(fn, path: Path, df: pd.DataFrame, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(path, df)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--public", action="store_true", help="use the public ws.append path")
    args = parser.parse_args()
    if args.public:
        workbook.FAST_ROWS = False
    df = make_rows(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        # Interleave so machine noise hits both alike.
        bare, ours = [], []
        for _ in range(args.repeat):
            bare.append(median_time(bare_dump, out / "bare.xlsx", df, 1))
            ours.append(median_time(stagepost_write, out / "ours.xlsx", df, 1))
        size_bare = (out / "bare.xlsx").stat().st_size
        size_ours = (out / "ours.xlsx").stat().st_size
    b, o = statistics.median(bare), statistics.median(ours)
    path = "public ws.append" if not workbook.FAST_ROWS else "fast row hook"
    print(f"rows={args.rows:,} cols=12 repeat={args.repeat} writer path: {path}")
    print(f"bare openpyxl write_only dump: {b:.2f} s  ({size_bare / 1e6:.1f} MB)")
    print(f"stagepost write_workbook:     {o:.2f} s  ({size_ours / 1e6:.1f} MB)")
    print(f"ratio: {o / b:.2f}")


if __name__ == "__main__":
    main()
