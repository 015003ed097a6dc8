"""Peak-memory measurement for streaming tests (Linux /proc; Python heap via tracemalloc)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


def status_bytes(field: str) -> int:
    """A /proc/self/status field (VmRSS, VmHWM) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


@dataclass
class Peak:
    rss_growth: int = 0  # peak RSS minus RSS at the start (whole process, DuckDB included)
    python_peak: int = 0  # peak of Python-heap allocations (tracemalloc) inside the block


@contextmanager
def peak_memory() -> Iterator[Peak]:
    """Measure the block's peak RSS growth and Python-heap peak.

    Resets the kernel's high-water mark first (Linux >= 4.0), so the peak is the block's.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pytest.skip("cannot reset peak RSS (/proc/self/clear_refs) on this kernel")
    peak = Peak()
    base = status_bytes("VmRSS")
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.python_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        peak.rss_growth = status_bytes("VmHWM") - base
