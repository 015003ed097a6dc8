"""Project set-up as a child process that SIGKILLs itself at a chosen step.

Usage: python -m tests.support.deal_child <staging url> <erp url> <outbound folder> <step> <now>
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import datetime
from pathlib import Path

from connectors.erp.sql_interface import SqlInterfaceTarget
from posting.deal_setup import run_deal_setup
from staging_models.db import StagingDB


def main(staging_url: str, erp_url: str, outbound: str, kill_at: str, now: str) -> None:
    def hook(step: str) -> None:
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    run_deal_setup(
        StagingDB(staging_url),
        SqlInterfaceTarget(erp_url),
        Path(outbound),
        now=datetime.fromisoformat(now),
        hooks=hook,
    )


if __name__ == "__main__":
    main(*sys.argv[1:6])
