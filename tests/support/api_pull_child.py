"""A Harvest pull in a child process, for the SIGKILL test: `python -m
tests.support.api_pull_child STAGING_URL API_URL TOKEN FOLDER NOW [KILL_AT]`.

With `KILL_AT=cursor` the child SIGKILLs itself after its window landed and committed, just
before the cursor moves (the other crash point; mid-page the parent kills it).
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import datetime
from pathlib import Path

from pydantic import SecretStr

from connectors.sources.api import harvest
from connectors.sources.api.http import RetryPolicy
from connectors.sources.api.rate_limit import RateLimit
from staging_models import api_pull
from staging_models.db import StagingDB
from tests.support.api_vendors import DEFAULTS


def main(argv: list[str]) -> None:
    staging_url, api_url, token, folder, now = argv[:5]
    kill_at = argv[5] if len(argv) > 5 else ""
    if kill_at == "cursor":

        def die(*args, **kwargs) -> None:
            os.kill(os.getpid(), signal.SIGKILL)

        api_pull.advance_cursor = die  # type: ignore[assignment]
    client = harvest.client(
        SecretStr(token),
        "123456",
        base_url=api_url,
        rate_limit=RateLimit(),
        retry=RetryPolicy(attempts=2, base=0.01, cap=0.05),
    )
    db = StagingDB(staging_url)
    api_pull.pull(
        db,
        harvest.Harvest(client, DEFAULTS),
        "time_entries",
        source_name="harvest",
        folder=Path(folder),
        now=datetime.fromisoformat(now),
    )


if __name__ == "__main__":
    main(sys.argv[1:])
