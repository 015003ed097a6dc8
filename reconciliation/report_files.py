"""Where workbooks and posting previews live, and the desk's link to download one.

The desk (`desk/downloads.py`) serves these folders read-only; this module only names them,
so the code that writes a workbook (below the desk in the layers) can give its link.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from config.settings import current
from staging_models.db import data_dir


def reports_dir() -> Path:
    """Where reconciliation workbooks are written and served from."""
    configured = current().reports_dir
    if configured:
        return configured.resolve()
    return data_dir() / "reports"


def previews_dir() -> Path:
    """Where posting windows write their preview workbooks (`STAGEPOST_PREVIEW_DIR`)."""
    configured = current().preview_dir
    return Path(configured).resolve() if configured else data_dir() / "previews"


def desk_base_url() -> str:
    """The desk's address as users reach it: `STAGEPOST_DESK_BASE_URL`, else host and port."""
    s = current()
    return (s.desk_base_url or f"http://{s.desk_host}:{s.desk_port}").rstrip("/")


def report_url(file_name: str) -> str:
    """The desk's download link of a workbook in the reports folder (sign-in required)."""
    return f"{desk_base_url()}/files/reports/{urllib.parse.quote(file_name)}"
