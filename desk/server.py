"""Serve the desk: `stagepost-desk` (or `python -m desk.server`), on `STAGEPOST_DESK_HOST`
(127.0.0.1 unless configured) and `STAGEPOST_DESK_PORT`, with uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

from config.settings import current
from desk.app import create_app
from staging_models.db import staging_db


def main(argv: list[str] | None = None) -> int:
    s = current()
    ap = argparse.ArgumentParser(prog="stagepost-desk", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default=s.desk_host)
    ap.add_argument("--port", type=int, default=s.desk_port)
    args = ap.parse_args(argv)
    app = create_app(staging_db(), release_duckdb=True)
    print(f"finance desk at http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        access_log=not s.desk_quiet,
        log_level="info",
        proxy_headers=bool(s.desk_proxy_user_header),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
