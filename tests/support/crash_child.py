"""The posting window as a child process that may SIGKILL itself at a chosen point.

Runs under a multiprocessing forkserver that has already imported everything, so a
child starts in milliseconds instead of the ~2 s a fresh interpreter needs to import
pandas, SQLAlchemy and DuckDB.
"""

from __future__ import annotations

import os
import signal

from posting.window import RetryPolicy, WindowConfig, run_window
from staging_models.db import StagingDB
from tests.support.erp_faults import FaultInjection, FaultySqlInterfaceTarget

#: Where a child can kill itself: a window step, or "erp_commit" (the ERP committed a post,
#: its answer not yet returned: the lost-response case).
KILL_POINTS = ("planned", "batch_marked_sent", "erp_commit", "batch_posted", "batch_recorded")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def run_child(
    staging_url: str, erp_url: str, kill_at: str | None, kill_on: int, batch_size: int
) -> None:
    """Run one window; SIGKILL this process the `kill_on`-th time `kill_at` is reached."""
    seen = {"n": 0}

    def maybe_die(point: str) -> None:
        if point == kill_at:
            seen["n"] += 1
            if seen["n"] >= kill_on:
                _die()

    faults = FaultInjection(after_commit=lambda call: maybe_die("erp_commit"))
    db = StagingDB(staging_url)
    erp = FaultySqlInterfaceTarget(erp_url, faults=faults)
    run_window(
        db,
        erp,
        WindowConfig(
            dry_run=False,
            batch_size=batch_size,
            invoice_batch_size=2,
            retry=RetryPolicy(attempts=2, base_delay=0.01),
        ),
        hooks=lambda step, batch: maybe_die(step),
    )


def run_revenue_child(
    staging_url: str, erp_url: str, as_of: str, kill_at: str | None, kill_on: int
) -> None:
    """Run one revenue window (one journal per batch); SIGKILL as `run_child` does."""
    from datetime import date

    from posting.revenue import RevenueConfig, run_revenue_window

    seen = {"n": 0}

    def maybe_die(point: str) -> None:
        if point == kill_at:
            seen["n"] += 1
            if seen["n"] >= kill_on:
                _die()

    faults = FaultInjection(after_commit=lambda call: maybe_die("erp_commit"))
    db = StagingDB(staging_url)
    erp = FaultySqlInterfaceTarget(erp_url, faults=faults)
    config = RevenueConfig(as_of=date.fromisoformat(as_of), journals_per_batch=1, operator="kill")
    run_revenue_window(db, erp, config, hooks=lambda step, batch: maybe_die(step))
