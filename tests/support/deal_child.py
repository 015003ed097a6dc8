"""Project set-up as a child process that SIGKILLs itself at a chosen step.

Usage: python -m tests.support.deal_child <staging url> <erp> <outbound folder> <step> <now>

<erp> is a SQL-interface URL, or `tryton:` and the JSON of a Tryton target's arguments (url,
database, password, legal_entities).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import datetime
from pathlib import Path

from connectors.erp.base import ErpTarget
from connectors.erp.sql_interface import SqlInterfaceTarget
from connectors.erp.tryton import TrytonTarget
from posting.deal_setup import run_deal_setup
from staging_models.db import StagingDB


def target(erp: str) -> ErpTarget:
    if not erp.startswith("tryton:"):
        return SqlInterfaceTarget(erp)
    spec = json.loads(erp.removeprefix("tryton:"))
    return TrytonTarget(
        spec["url"],
        spec["database"],
        "admin",
        spec["password"],
        legal_entities=spec["legal_entities"],
    )


def main(staging_url: str, erp_url: str, outbound: str, kill_at: str, now: str) -> None:
    def hook(step: str) -> None:
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    run_deal_setup(
        StagingDB(staging_url),
        target(erp_url),
        Path(outbound),
        now=datetime.fromisoformat(now),
        hooks=hook,
    )


if __name__ == "__main__":
    main(*sys.argv[1:6])
