"""The daily digest as a command (its content and delivery: `staging_models/desk_digest.py`).

    stagepost-desk-digest [--dry-run]

Dagster runs the same digest on weekdays at 07:00 (`desk_digest_job`, schedule
`desk_digest_weekdays`); this command is for cron or a one-off.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from config.settings import current
from reconciliation.report_files import desk_base_url
from staging_models.db import staging_db
from staging_models.desk_digest import collect, message, send


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="stagepost-desk-digest", description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="print the e-mails, send nothing")
    args = ap.parse_args(argv)
    db = staging_db()
    now = datetime.now(UTC)
    if args.dry_run:
        for d in collect(db, now):
            print(message(d, current().desk_smtp_from, now, desk_base_url()).as_string())
        return 0
    sent, missing = send(db, desk_base_url(), now)
    print(f"{sent} digests sent")
    if missing:
        print(f"no e-mail address for: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
