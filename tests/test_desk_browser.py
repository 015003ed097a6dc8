"""The finance desk in a real browser: Debian's chromium driven by playwright
(`executable_path`, no browser download), against the desk served by uvicorn on a loopback
port over a DuckDB staging database with quarantined rows and a real posting window."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from desk.app import create_app
from staging_models.db import StagingDB
from tests.support.desk_world import PASSWORD, DeskWorld, build

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a test extra")
if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("CI needs Debian's chromium for the desk's browser tests")
    pytest.skip(
        "Debian's chromium is not installed (./dev test installs it)", allow_module_level=True
    )

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, DeskWorld]]:
    folder = tmp_path_factory.mktemp("desk")
    mp = pytest.MonkeyPatch()
    db = StagingDB(f"duckdb:///{folder / 'staging.duckdb'}")
    db.init_schema()
    world = build(db, folder, mp)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(db, secret=b"s" * 32), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the desk did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", world
    server.should_exit = True
    thread.join(10)
    db.engine.dispose()
    mp.undo()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page_as(browser, served):
    """A fresh browser context signed in as a user (none: not signed in)."""
    base, _ = served
    contexts = []

    def make(user: str | None):
        ctx = browser.new_context(base_url=base, accept_downloads=True)
        contexts.append(ctx)
        page = ctx.new_page()
        if user:
            page.goto("/login")
            page.fill("input[name=username]", user)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/")
        return page

    yield make
    for ctx in contexts:
        ctx.close()


def _keys(page) -> list[str]:
    return page.eval_on_selector_all("tr[data-key]", "rows => rows.map(r => r.dataset.key)")


def test_sign_in_and_filter(page_as) -> None:
    page = page_as("otto")
    assert "otto" in page.inner_text("header") and "operations" in page.inner_text("header")
    assert len(_keys(page)) == 5
    page.fill("input[name=rule]", "TE_PROJECT_CLOSED")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/?*rule=TE_PROJECT_CLOSED*")
    assert _keys(page) == ["time_entries|TE2"]
    page.select_option("form.filters select[name=owner]", "hr-data")
    page.fill("input[name=rule]", "")
    page.click("form.filters button[type=submit]")
    assert _keys(page) == ["time_entries|TE3"]


def test_assign_an_owner_and_due_date(page_as, served) -> None:
    _, world = served
    page = page_as("otto")
    page.check('input[name=item][value="time_entries|TE4"]')
    page.fill("#act input[name=owner]", "ops-us")
    page.fill("#act input[name=due_date]", "2026-12-24")
    page.click("#act button[formaction='/assign']")
    page.wait_for_selector(".msg")
    assert "assigned to ops-us" in page.inner_text(".msg")
    row = page.locator('tr[data-key="time_entries|TE4"]')
    assert "ops-us" in row.inner_text() and "2026-12-24" in row.inner_text()
    assert (
        world.db.scalar("SELECT owner FROM desk_assignments WHERE group_key = 'TE4' AND NOT routed")
        == "ops-us"
    )


def test_ignore_with_preview_then_undo(page_as, served) -> None:
    _, world = served
    page = page_as("otto")
    page.check('input[name=item][value="time_entries|TE6"]')
    page.fill("#act input[name=reason]", "project paused, billed by hand")
    page.click("#act button[formaction='/ignore/preview']")
    assert "Ignore 1 rows?" in page.inner_text("h1")
    assert "TE6" in page.inner_text("table.preview")
    assert world.db.scalar("SELECT status FROM quarantine WHERE row_key = 'TE6'") == "open"
    page.click("text=Ignore these 1 rows")
    page.wait_for_url("**/audit?*")
    assert "1 rows ignored" in page.inner_text(".msg")
    assert world.db.scalar("SELECT status FROM quarantine WHERE row_key = 'TE6'") == "ignored"
    page.goto("/")
    assert "time_entries|TE6" not in _keys(page)
    page.goto("/audit")
    page.click("tr:has-text('ignore') >> button:has-text('Undo')")
    page.wait_for_selector(".msg")
    assert "1 rows reopened" in page.inner_text(".msg")
    assert world.db.scalar("SELECT status FROM quarantine WHERE row_key = 'TE6'") == "open"
    page.goto("/")
    assert "time_entries|TE6" in _keys(page)


def test_download_a_workbook_and_a_preview(page_as, served, tmp_path: Path) -> None:
    _, world = served
    page = page_as("carla")
    page.goto("/files")
    for name, original in (
        (world.workbook.name, world.workbook),
        (world.preview.name, world.preview),
    ):
        with page.expect_download() as got:
            page.click(f"a:has-text('{name}')")
        saved = tmp_path / name
        got.value.save_as(saved)
        assert saved.read_bytes() == original.read_bytes()
    page.goto("/windows")
    assert world.window_id in page.inner_text("table.windows")
    with page.expect_download() as got:
        page.click("table.windows a:has-text('xlsx')")
    assert got.value.suggested_filename == world.preview.name


def test_controller_cannot_act(page_as, served) -> None:
    base, world = served
    page = page_as("carla")
    assert page.locator("input[name=item]").count() == 0
    assert page.locator("button:has-text('Re-validate now')").count() == 0
    # Even with a valid token, the desk refuses the controller's POST.
    token = page.get_attribute("header input[name=csrf_token]", "value")
    resp = page.request.post(
        f"{base}/assign", form={"csrf_token": token, "item": "time_entries|TE2", "owner": "me"}
    )
    assert resp.status == 403 and "may read, not act" in resp.text()
    assert (
        world.db.scalar(
            "SELECT count(*) FROM desk_audit WHERE actor = 'carla' AND action <> 'login'"
        )
        == 0
    )


def test_action_without_its_csrf_token_is_refused(page_as, served) -> None:
    _, world = served
    page = page_as("otto")
    page.check('input[name=item][value="time_entries|TE2"]')
    page.fill("#act input[name=owner]", "someone-else")
    page.eval_on_selector("#act input[name=csrf_token]", "e => e.remove()")
    page.click("#act button[formaction='/assign']")
    assert "security token" in page.inner_text(".error")
    assert (
        world.db.scalar("SELECT count(*) FROM desk_assignments WHERE owner = 'someone-else'") == 0
    )


def test_unauthenticated_request_is_refused(page_as, served) -> None:
    base, world = served
    page = page_as(None)
    page.goto("/")
    assert page.url.startswith(f"{base}/login")
    resp = page.request.get(f"{base}/files/reports/{world.workbook.name}")
    assert resp.status == 401
    resp = page.request.post(f"{base}/ignore", form={"reason": "x", "rule": "TE_KEY_MISSING"})
    assert resp.status == 401
