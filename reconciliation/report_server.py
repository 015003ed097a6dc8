"""Serve the reports folder read-only on localhost, so workbook links in the Dagster UI download.

    python -m reconciliation.report_server [--port 3001] [--dir <reports folder>]

Deliberately tiny (stdlib `http.server`): GET and HEAD only, files of the reports folder
only (no directory listings, no `..`, no symlinks out of the folder, no dotfiles),
bound to 127.0.0.1. Settings: `STAGEPOST_REPORTS_DIR` (default `<STAGEPOST_DATA_DIR>/reports`),
`STAGEPOST_REPORTS_PORT` (default 3001), `STAGEPOST_REPORTS_BASE_URL` (the links' base,
default `http://127.0.0.1:<port>`).
"""

from __future__ import annotations

import argparse
import os
import posixpath
import urllib.parse
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from config.settings import current
from staging_models.db import data_dir

HOST = "127.0.0.1"


def reports_dir() -> Path:
    """Where workbooks are written and served from."""
    configured = current().reports_dir
    if configured:
        return configured.resolve()
    return data_dir() / "reports"


def reports_port() -> int:
    return current().reports_port


def report_url(file_name: str) -> str:
    """The download link of a file in the reports folder."""
    base = current().reports_base_url or f"http://{HOST}:{reports_port()}"
    return f"{base.rstrip('/')}/{urllib.parse.quote(file_name)}"


class ReportHandler(SimpleHTTPRequestHandler):
    """Files directly inside the reports folder, nothing else."""

    server_version = "stagepost-reports"
    sys_version = ""

    def _resolve(self) -> Path | None:
        raw = urllib.parse.urlsplit(self.path).path
        name = urllib.parse.unquote(raw)
        if not name.startswith("/"):
            return None
        name = name[1:]
        # One plain file name: no separators, no parent references, no hidden files.
        if (
            not name
            or "/" in name
            or "\\" in name
            or name.startswith(".")
            or posixpath.normpath(name) != name
            or "\x00" in name
        ):
            return None
        root = Path(self.directory).resolve()
        path = (root / name).resolve()
        if path.parent != root or not path.is_file():
            return None
        return path

    def send_head(self):  # type: ignore[override]
        path = self._resolve()
        if path is None:
            self.send_error(HTTPStatus.NOT_FOUND, "Not found")
            return None
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed by copyfile's caller)
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND, "Not found")
            return None
        size = os.fstat(f.fileno()).st_size
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Length", str(size))
        self.send_header(
            "Content-Disposition", f"attachment; filename*=UTF-8''{urllib.parse.quote(path.name)}"
        )
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        return f

    def _refuse(self) -> None:
        self.send_error(HTTPStatus.METHOD_NOT_ALLOWED, "Read-only")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse  # noqa: N815

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        if current().reports_quiet:
            return
        super().log_message(format, *args)


def make_server(directory: Path, port: int, host: str = HOST) -> ThreadingHTTPServer:
    """A server for `directory` on host:port (port 0 picks a free one: see `server_port`)."""
    directory.mkdir(parents=True, exist_ok=True)
    handler = partial(ReportHandler, directory=str(directory))
    return ThreadingHTTPServer((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=reports_port())
    ap.add_argument("--dir", type=Path, default=reports_dir())
    args = ap.parse_args(argv)
    server = make_server(args.dir, args.port)
    print(f"serving {args.dir} read-only at http://{HOST}:{server.server_port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
