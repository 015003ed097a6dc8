"""Vectorised formatting of numeric columns into the canonical export strings.

Every column of the sample export is text, built with Arrow compute kernels or
by `take` from a small table of pre-formatted values, because formatting 5M
values one Python call at a time would dominate the run time. Missing values
are Arrow nulls (written as empty CSV cells, `None` in pandas).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EPOCH = date(1970, 1, 1)
T = TypeVar("T")
R = TypeVar("R")
CHUNK_ROWS = 1 << 18


def workers() -> int:
    """Threads for chunked work: Arrow and numpy kernels release the GIL."""
    return max(1, min(4, os.cpu_count() or 1))


def ordered_map(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """`map(fn, items)` on a thread pool, in order, with at most 2x workers in flight."""
    n = workers()
    if n == 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=n) as pool:
        pending = []
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * n:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


def row_chunks(n: int, size: int = CHUNK_ROWS) -> list[tuple[int, int]]:
    """[lo, hi) ranges covering n rows (one empty range when n == 0)."""
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)] or [(0, 0)]


def day_number(d: date) -> int:
    """Days since 1970-01-01, the integer form every date takes inside the generator."""
    return (d - EPOCH).days


def weekday(days: np.ndarray) -> np.ndarray:
    """ISO weekday index (Monday=0 .. Sunday=6) of day numbers (1970-01-01 was a Thursday)."""
    return (days + 3) % 7


def take(values: Sequence[str] | pa.Array, idx: np.ndarray) -> pa.StringArray:
    """`values[idx]` as an Arrow string array; negative indices become nulls."""
    arr = values if isinstance(values, pa.Array) else pa.array(list(values), pa.string())
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iu":
        idx = idx.astype(np.int64)
    neg = idx < 0
    if neg.any():
        return arr.take(pa.array(np.where(neg, 0, idx), mask=neg))
    return arr.take(pa.array(idx))


def join(*parts: pa.Array | str) -> pa.StringArray:
    """Element-wise concatenation; a null part makes the result null."""
    return pc.binary_join_element_wise(*parts, "")


def fmt_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.StringArray:
    """`prefix` + zero-padded number (negative numbers become nulls)."""
    numbers = np.asarray(numbers, dtype=np.int64)
    neg = numbers < 0
    text = pc.cast(pa.array(numbers, mask=neg if neg.any() else None), pa.string())
    return join(prefix, pc.utf8_lpad(text, width, "0"))


def _fmt_cents_direct(cents: np.ndarray, null: np.ndarray | None) -> pa.StringArray:
    mag = np.abs(cents)
    units = pc.cast(pa.array(mag // 100), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(mag % 100), pa.string()), 2, "0")
    sign = take(["", "-"], (cents < 0).astype(np.int64))
    out = join(sign, units, ".", frac)
    if null is not None and null.any():
        out = pc.if_else(pa.array(null), pa.scalar(None, pa.string()), out)
    return out


def fmt_cents(cents: np.ndarray, null: np.ndarray | None = None) -> pa.StringArray:
    """Integer hundredths as `-12.30` / `7.50` (dot decimal, exactly two decimals).

    Columns such as hours and rates take few distinct values, so they are
    formatted once and gathered with `take`, which is far cheaper than
    casting millions of integers.
    """
    cents = np.asarray(cents, dtype=np.int64)
    if len(cents) == 0:
        return pa.array([], pa.string())
    lo, hi = int(cents.min()), int(cents.max())
    if hi - lo > 200_000 or len(cents) < 4 * (hi - lo + 1):
        return _fmt_cents_direct(cents, null)
    table = _fmt_cents_direct(np.arange(lo, hi + 1, dtype=np.int64), None)
    idx = cents - lo
    if null is not None:
        idx = np.where(null, -1, idx)
    return take(table, idx)


def fmt_bool(flags: np.ndarray) -> pa.StringArray:
    """`true` / `false`."""
    return take(["false", "true"], np.asarray(flags, dtype=np.int64))


class Calendar:
    """Pre-formatted dates, times of day and UTC offsets for a range of days.

    Offsets come from the IANA zone of each legal entity at local noon of each
    day, so exported timestamps carry the right daylight-saving offset (times
    are generated between 06:00 and 21:00 local, away from the switch hour).
    """

    def __init__(self, first_day: int, last_day: int, zones: Sequence[str]) -> None:
        self.first = first_day
        self.n_days = last_day - first_day + 1
        days = [EPOCH + timedelta(days=first_day + i) for i in range(self.n_days)]
        self.dates = pa.array([d.isoformat() for d in days], pa.string())
        self.times = pa.array(
            [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)],
            pa.string(),
        )
        offsets: list[str] = []
        for zone in zones:
            tz = ZoneInfo(zone)
            for d in days:
                off = datetime(d.year, d.month, d.day, 12, tzinfo=tz).utcoffset()
                minutes = int(off.total_seconds() // 60) if off is not None else 0
                if minutes == 0:
                    offsets.append("Z")
                else:
                    sign = "+" if minutes > 0 else "-"
                    offsets.append(f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}")
        self.offsets = pa.array(offsets, pa.string())

    def _index(self, days: np.ndarray) -> np.ndarray:
        days = np.asarray(days, dtype=np.int64)
        idx = np.where(days >= 0, days - self.first, -1)
        if len(idx) and (idx.min() < -1 or idx.max() >= self.n_days):
            raise ValueError("day outside the calendar range")
        return idx

    def fmt_dates(self, days: np.ndarray) -> pa.StringArray:
        """ISO dates; negative day numbers become nulls."""
        return take(self.dates, self._index(days))

    def fmt_timestamps(
        self, days: np.ndarray, seconds: np.ndarray, zone_idx: np.ndarray
    ) -> pa.StringArray:
        """ISO 8601 local timestamps with UTC offset; negative days become nulls."""
        idx = self._index(days)
        off_idx = np.where(idx >= 0, np.asarray(zone_idx, np.int64) * self.n_days + idx, -1)
        return join(
            take(self.dates, idx),
            "T",
            take(self.times, np.asarray(seconds, np.int64)),
            take(self.offsets, off_idx),
        )
