"""Screenshots of the desk for docs/ (worklist, a posting window's history, key figures):
the test world served by uvicorn, photographed by Debian's chromium through playwright.

    python -m tests.support.desk_screenshots docs/img
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import sync_playwright

from desk.app import create_app
from staging_models.db import StagingDB
from tests.support.desk_world import PASSWORD, build


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    mp = pytest.MonkeyPatch()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = StagingDB(f"duckdb:///{folder / 'staging.duckdb'}")
        db.init_schema()
        world = build(db, folder, mp)
        server = uvicorn.Server(
            uvicorn.Config(create_app(db, secret=b"s" * 32), port=3199, log_level="warning")
        )
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        base = "http://127.0.0.1:3199"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900}, base_url=base)
            page.goto("/login")
            page.fill("input[name=username]", "otto")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/")
            page.screenshot(path=str(out / "desk-worklist.png"), full_page=True)
            page.goto(f"/windows/{world.window_id}")
            page.screenshot(path=str(out / "desk-window.png"), full_page=True)
            page.goto("/kpis")
            page.screenshot(path=str(out / "desk-kpis.png"), full_page=True)
            browser.close()
        server.should_exit = True
        db.engine.dispose()
    mp.undo()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img"))
