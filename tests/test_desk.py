"""The finance desk over HTTP (Starlette's TestClient): sign-in and roles, CSRF and
unauthenticated refusals, the worklist's filters and groups, audited actions, the windows'
history, downloads that refuse path traversal. On DuckDB and PostgreSQL staging."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from desk import sessions
from desk.app import create_app
from desk.worklist import AGE_BUCKETS
from staging_models import desk_items
from staging_models.db import StagingDB
from tests.support.desk_world import NOW, PASSWORD, DeskWorld, build

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def world(any_db: StagingDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DeskWorld:
    return build(any_db, tmp_path, monkeypatch)


@pytest.fixture
def app(world: DeskWorld):
    return create_app(world.db, secret=b"k" * 32)


def sign_in(app, user: str, password: str = PASSWORD) -> TestClient:
    client = TestClient(app, follow_redirects=False)
    form = client.get("/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)
    done = client.post(
        "/login", data={"login_token": token, "username": user, "password": password}
    )
    assert done.status_code == 303, done.text
    return client


def csrf_of(client: TestClient, path: str = "/") -> str:
    return CSRF.search(client.get(path).text).group(1)


def rows_of(html: str) -> list[str]:
    return re.findall(r'data-key="([^"]+)"', html)


# -- authentication ------------------------------------------------------------------------------


def test_nothing_answers_without_sign_in(app, world: DeskWorld) -> None:
    client = TestClient(app, follow_redirects=False)
    for path in ("/", "/windows", "/files", "/audit", f"/windows/{world.window_id}"):
        resp = client.get(path)
        assert resp.status_code == 303 and resp.headers["location"].startswith("/login")
    assert client.get(f"/files/reports/{world.workbook.name}").status_code == 401
    # A browser following a workbook link from Dagster's UI is sent to sign in, then back.
    link = client.get(f"/files/reports/{world.workbook.name}", headers={"accept": "text/html"})
    assert link.status_code == 303
    assert link.headers["location"] == "/login?next=%2Ffiles%2Freports%2F" + world.workbook.name
    assert client.post("/ignore", data={"reason": "x"}).status_code == 401
    assert client.post("/assign", data={"owner": "x"}).status_code == 401


def test_sign_in_never_redirects_off_site(app) -> None:
    client = TestClient(app, follow_redirects=False)
    for target in ("//evil.example", "/\\evil.example", "https://evil.example", "/ok?x=1"):
        token = re.search(r'name="login_token" value="([^"]+)"', client.get("/login").text)[1]
        resp = client.post(
            "/login",
            data={"login_token": token, "username": "otto", "password": PASSWORD, "next": target},
        )
        assert resp.headers["location"] == ("/ok?x=1" if target == "/ok?x=1" else "/"), target


def test_values_from_files_are_escaped(app, world: DeskWorld) -> None:
    with world.db.begin() as conn:
        conn.exec_driver_sql(
            'UPDATE quarantine SET raw_values = \'{"description": "<script>alert(1)</script>"}\', '
            "messages = '<img src=x onerror=alert(2)>' WHERE row_key = 'TE4'"
        )
    html = sign_in(app, "otto").get("/").text
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert "<img src=x" not in html and "&lt;img src=x" in html


def test_wrong_password_and_unknown_user_are_refused(app) -> None:
    client = TestClient(app, follow_redirects=False)
    for user, password in (("otto", "wrong password!!"), ("nobody", PASSWORD)):
        token = re.search(r'name="login_token" value="([^"]+)"', client.get("/login").text)[1]
        resp = client.post(
            "/login", data={"login_token": token, "username": user, "password": password}
        )
        assert resp.status_code == 303 and "error=" in resp.headers["location"]
        assert sessions.COOKIE not in resp.cookies
    assert client.get("/").status_code == 303


def test_sign_in_form_needs_its_own_token(app) -> None:
    client = TestClient(app, follow_redirects=False)
    client.get("/login")
    resp = client.post("/login", data={"username": "otto", "password": PASSWORD})
    assert resp.status_code == 403


def test_session_expires_and_a_forged_cookie_is_no_session(app) -> None:
    key = b"k" * 32
    cookie, _ = sessions.issue(key, "otto", "operations", minutes=1, now=0)
    client = TestClient(app, follow_redirects=False, cookies={sessions.COOKIE: cookie})
    assert client.get("/").status_code == 303  # expired long ago
    fresh, _ = sessions.issue(key, "otto", "operations", minutes=5)
    body, sig = fresh.split(".")
    forged, _ = sessions.issue(b"x" * 32, "otto", "admin", minutes=5)
    for bad in (forged, f"{body}.{sig[:-2]}AA", "garbage"):
        client.cookies.set(sessions.COOKIE, bad)
        assert client.get("/").status_code == 303
    client.cookies.set(sessions.COOKIE, fresh)
    assert client.get("/").status_code == 200


def test_disabling_a_user_or_changing_a_role_applies_at_once(app, world: DeskWorld) -> None:
    from desk.users import add_user, disable_user

    client = sign_in(app, "otto")
    token = csrf_of(client)
    add_user(world.db, "otto", "controller", password=PASSWORD)  # demoted while signed in
    resp = client.post(
        "/assign", data={"csrf_token": token, "item": "time_entries|TE2", "owner": "x"}
    )
    assert resp.status_code == 403
    disable_user(world.db, "otto")
    assert client.get("/").status_code == 303


def test_passwords_are_stored_as_argon2id(world: DeskWorld) -> None:
    stored = world.db.scalar("SELECT password_hash FROM desk_users WHERE username = 'otto'")
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_proxy_header_names_the_user(world: DeskWorld, monkeypatch) -> None:
    monkeypatch.setenv("STAGEPOST_DESK_PROXY_USER_HEADER", "X-Forwarded-User")
    client = TestClient(create_app(world.db, secret=b"k" * 32), follow_redirects=False)
    assert client.get("/").status_code == 303  # no header: not signed in
    assert client.get("/", headers={"X-Forwarded-User": "mallory"}).status_code == 403
    page = client.get("/", headers={"X-Forwarded-User": "carla"})
    assert page.status_code == 200 and "carla" in page.text and "controller" in page.text
    # The session the proxy's user got carries the CSRF token of their POSTs.
    token = CSRF.search(client.get("/", headers={"X-Forwarded-User": "otto"}).text)[1]
    resp = client.post(
        "/assign",
        data={"csrf_token": token, "item": "time_entries|TE2", "owner": "ops-eu"},
        headers={"X-Forwarded-User": "otto"},
    )
    assert resp.status_code == 303, resp.text


# -- roles and CSRF ------------------------------------------------------------------------------


def test_controller_reads_but_cannot_act(app) -> None:
    client = sign_in(app, "carla")
    page = client.get("/")
    assert page.status_code == 200 and 'type="checkbox"' not in page.text
    token = CSRF.search(page.text)[1]
    for path, data in (
        ("/assign", {"item": "time_entries|TE2", "owner": "me"}),
        ("/ignore/preview", {"item": "time_entries|TE2"}),
        ("/reopen", {"item": "time_entries|TE2"}),
        ("/revalidate", {}),
    ):
        resp = client.post(path, data={**data, "csrf_token": token})
        assert resp.status_code == 403, path
        assert "may read, not act" in resp.text


def test_action_without_csrf_token_is_refused(app, world: DeskWorld) -> None:
    client = sign_in(app, "otto")
    for data in ({}, {"csrf_token": "stale"}):
        resp = client.post("/assign", data={"item": "time_entries|TE2", "owner": "x", **data})
        assert resp.status_code == 403 and "security token" in resp.text
    assert world.db.scalar("SELECT count(*) FROM desk_audit WHERE action = 'assign'") == 0


# -- worklist ------------------------------------------------------------------------------------


def test_worklist_lists_every_open_exception_with_rules_and_owners(app) -> None:
    client = sign_in(app, "otto")
    html = client.get("/").text
    keys = rows_of(html)
    assert {"time_entries|TE2", "time_entries|TE3", "time_entries|TE4", "time_entries|TE6"} <= set(
        keys
    )
    keyless = [k for k in keys if k.startswith("time_entries|~")]
    assert len(keyless) == 1  # the keyless row delivered twice is one line...
    assert "×2" in html  # ...with its count
    assert "TE_PROJECT_CLOSED" in html and "project P2 is closed" in html and "row 4" in html
    assert "hr-data" in html  # routed by rule code
    assert "time_entries|TE1" not in keys  # valid: not an exception


def test_worklist_filters(app) -> None:
    client = sign_in(app, "otto")
    assert rows_of(client.get("/?rule=TE_PROJECT_CLOSED").text) == ["time_entries|TE2"]
    assert rows_of(client.get("/?owner=hr-data").text) == ["time_entries|TE3"]
    assert rows_of(client.get("/?project=P4").text) == ["time_entries|TE6"]
    assert rows_of(client.get("/?dataset=invoices").text) == []
    assert set(rows_of(client.get("/?legal_entity=US01").text)) >= {"time_entries|TE2"}
    # Every exception was first seen at NOW (2026-11-20): one age bucket holds them all.
    age = (datetime.now(UTC).date() - NOW.date()).days
    bucket = next(
        k for k, (lo, hi) in AGE_BUCKETS.items() if age >= lo and (hi is None or age < hi)
    )
    for label in AGE_BUCKETS:
        got = rows_of(client.get("/", params={"age": label}).text)
        assert len(got) == (5 if label == bucket else 0), label
    # Due 1 to 3 business days after 2026-11-20, all past by now.
    assert len(rows_of(client.get("/?status=overdue").text)) == 5
    assert client.get("/").text.count('class="overdue') == 5
    assert rows_of(client.get("/?status=ignored").text) == []


def test_worklist_pages_by_keyset(world: DeskWorld) -> None:
    from desk import worklist

    desk_items.refresh(world.db)
    first = worklist.page(world.db, worklist.Filters(), size=2)
    assert first.total == 5 and len(first.rows) == 2 and first.next_cursor
    seen = [r["group_key"] for r in first.rows]
    cursor = first.next_cursor
    while cursor:
        nxt = worklist.page(world.db, worklist.Filters(), after=cursor, size=2)
        seen += [r["group_key"] for r in nxt.rows]
        cursor = nxt.next_cursor
    assert len(seen) == len(set(seen)) == 5


def test_worklist_pages_in_the_browser(app, monkeypatch) -> None:
    monkeypatch.setattr("desk.worklist.PAGE_SIZE", 2)
    client = sign_in(app, "otto")
    seen, url = [], "/"
    while url:
        html = client.get(url).text
        seen += rows_of(html)
        found = re.search(r'<a href="([^"]+)" rel="next">', html)
        url = found[1].replace("&amp;", "&") if found else None
        if url:
            assert 'rel="first"' in client.get(url).text
    assert len(seen) == len(set(seen)) == 5


# -- actions -------------------------------------------------------------------------------------


def test_assign_and_comment_are_audited(app, world: DeskWorld) -> None:
    client = sign_in(app, "otto")
    token = csrf_of(client)
    resp = client.post(
        "/assign",
        data={
            "csrf_token": token,
            "item": ["time_entries|TE2", "time_entries|TE4"],
            "owner": "ops-us",
            "due_date": "2026-12-01",
        },
    )
    assert resp.status_code == 303
    assert rows_of(client.get("/?owner=ops-us").text) == ["time_entries|TE2", "time_entries|TE4"]
    resp = client.post(
        "/comment",
        data={
            "csrf_token": token,
            "ds": "time_entries",
            "gk": "TE2",
            "body": "asked PM to reopen P2",
        },
    )
    assert resp.status_code == 303
    item = client.get("/item?ds=time_entries&gk=TE2").text
    assert "asked PM to reopen P2" in item
    assert "quarantined" in item and "TE_PROJECT_CLOSED" in item  # its history, from validation
    back = client.post(
        "/assign",
        data={
            "csrf_token": token,
            "item": "time_entries|TE2",
            "owner": "ops-eu",
            "back": "/item?ds=time_entries&gk=TE2",
        },
    )
    assert back.headers["location"].startswith("/item?ds=time_entries&gk=TE2&msg=")
    audit = world.db.query_df("SELECT actor, action, row_count FROM desk_audit ORDER BY acted_at")
    assert list(audit.query("action != 'login'").itertuples(index=False, name=None)) == [
        ("otto", "assign", 2),
        ("otto", "comment", 1),
        ("otto", "assign", 1),
    ]


def test_ignore_after_preview_then_undo(app, world: DeskWorld) -> None:
    client = sign_in(app, "otto")
    token = csrf_of(client)
    pv = client.post(
        "/ignore/preview",
        data={
            "csrf_token": token,
            "rule": "TE_PROJECT_ON_HOLD",
            "reason": "paused project, billed by hand",
        },
    )
    assert pv.status_code == 200 and "Ignore 1 rows?" in pv.text and "TE6" in pv.text
    digest = re.search(r'name="token" value="([^"]+)"', pv.text)[1]
    # Nothing changed yet: the preview only shows.
    assert world.db.scalar("SELECT status FROM quarantine WHERE row_key = 'TE6'") == "open"
    done = client.post(
        "/ignore",
        data={
            "csrf_token": token,
            "token": digest,
            "rule": "TE_PROJECT_ON_HOLD",
            "reason": "paused project",
        },
    )
    assert done.status_code == 303
    assert world.db.scalar("SELECT status FROM quarantine WHERE row_key = 'TE6'") == "ignored"
    assert "time_entries|TE6" not in rows_of(client.get("/").text)
    assert rows_of(client.get("/?status=ignored").text) == ["time_entries|TE6"]
    audit_id = world.db.scalar("SELECT audit_id FROM desk_audit WHERE action = 'ignore'")
    assert (
        world.db.scalar("SELECT count(*) FROM desk_audit_rows WHERE audit_id = :a", {"a": audit_id})
        == 1
    )
    undo = client.post("/reopen", data={"csrf_token": token, "undo": audit_id})
    assert undo.status_code == 303
    assert world.db.scalar("SELECT status FROM quarantine WHERE row_key = 'TE6'") == "open"
    events = world.db.query_df(
        "SELECT event FROM quarantine_events WHERE row_key = 'TE6' ORDER BY event_at"
    )["event"].tolist()
    assert events[-2:] == ["ignored", "reopened"]
    assert "undone" in client.get("/audit").text


def test_ignore_refused_when_rows_changed_since_preview(app, world: DeskWorld) -> None:
    client = sign_in(app, "otto")
    token = csrf_of(client)
    pv = client.post("/ignore/preview", data={"csrf_token": token, "item": "time_entries|TE2"})
    digest = re.search(r'name="token" value="([^"]+)"', pv.text)[1]
    resp = client.post(
        "/ignore",
        data={"csrf_token": token, "token": digest, "item": "time_entries|TE2", "reason": ""},
    )
    assert resp.status_code == 400 and "needs a reason" in resp.text
    resp = client.post(
        "/ignore",
        data={"csrf_token": token, "token": "0" * 64, "item": "time_entries|TE2", "reason": "dup"},
    )
    assert resp.status_code == 400 and "changed since the preview" in resp.text
    assert world.db.scalar("SELECT status FROM quarantine WHERE row_key = 'TE2'") == "open"


def test_ignore_a_keyless_group_hits_both_rows(app, world: DeskWorld) -> None:
    client = sign_in(app, "otto")
    token = csrf_of(client)
    key = next(k for k in rows_of(client.get("/").text) if "|~" in k)
    pv = client.post("/ignore/preview", data={"csrf_token": token, "item": key})
    assert "Ignore 2 rows?" in pv.text
    digest = re.search(r'name="token" value="([^"]+)"', pv.text)[1]
    client.post(
        "/ignore", data={"csrf_token": token, "token": digest, "item": key, "reason": "test rows"}
    )
    assert (
        world.db.scalar(
            "SELECT count(*) FROM quarantine WHERE row_key LIKE '~%' AND status = 'ignored'"
        )
        == 2
    )


# -- re-validate through Dagster's GraphQL API ---------------------------------------------------


class _FakeDagster(BaseHTTPRequestHandler):
    """Replays the documented answers of Dagster's GraphQL API to the two queries the desk sends."""

    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        import json

        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        if "repositoriesOrError" in body["query"]:
            data = {
                "repositoriesOrError": {
                    "__typename": "RepositoryConnection",
                    "nodes": [
                        {
                            "name": "__repository__",
                            "location": {"name": "stagepost"},
                            "pipelines": [{"name": "main_job"}, {"name": "revalidate_job"}],
                        }
                    ],
                }
            }
        else:
            data = {
                "launchRun": {
                    "__typename": "LaunchRunSuccess",
                    "run": {"runId": "5e1f2a3b-0000-4000-8000-000000000001"},
                }
            }
        out = json.dumps({"data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_dagster(monkeypatch) -> Iterator[list[dict]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeDagster)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("STAGEPOST_DESK_DAGSTER_URL", f"http://127.0.0.1:{server.server_port}")
    _FakeDagster.seen = []
    yield _FakeDagster.seen
    server.shutdown()
    server.server_close()


def test_revalidate_launches_the_job_and_audits_the_run(
    app, world: DeskWorld, fake_dagster
) -> None:
    client = sign_in(app, "otto")
    resp = client.post("/revalidate", data={"csrf_token": csrf_of(client)})
    assert resp.status_code == 303
    launch = fake_dagster[-1]["variables"]["params"]
    assert launch["selector"] == {
        "repositoryLocationName": "stagepost",
        "repositoryName": "__repository__",
        "jobName": "revalidate_job",
    }
    assert {"key": "stagepost/desk_user", "value": "otto"} in launch["executionMetadata"]["tags"]
    assert world.db.scalar("SELECT run_id FROM desk_audit WHERE action = 'revalidate'") == (
        "5e1f2a3b-0000-4000-8000-000000000001"
    )
    assert "5e1f2a3b" in client.get("/audit").text


def test_revalidate_says_when_dagster_is_down(app, world: DeskWorld, monkeypatch) -> None:
    monkeypatch.setenv("STAGEPOST_DESK_DAGSTER_URL", "http://127.0.0.1:9")
    client = sign_in(app, "otto")
    resp = client.post("/revalidate", data={"csrf_token": csrf_of(client)})
    assert resp.status_code == 400 and "does not answer" in resp.text


def test_kpis_per_currency_rule_and_owner(app, world: DeskWorld) -> None:
    html = sign_in(app, "carla").get("/kpis").text
    # Approved, not posted: TE1 and TE5 (rejected by the ERP), dollars only (TE7 is posted).
    aging = html.split('class="money kpi-aging"')[1].split("</table>")[0]
    assert ">USD<" not in aging and "15.0000" in aging and "2250.00" in aging
    assert "<h3>USD</h3>" in html and "<h3>EUR</h3>" not in html
    rules = html.split('class="kpi-rules"')[1].split("</table>")[0]
    assert rules.count("<tr>") == 6 and "TE_KEY_MISSING" in rules  # header + 5 rules
    owners = html.split('class="kpi-owners"')[1].split("</table>")[0]
    assert re.search(r"hr-data</a></td><td class=\"num\">1</td><td class=\"num\">1</td>", owners)
    straight = html.split('class="kpi-straight"')[1].split("</table>")[0]
    assert "33.3 %" in straight or "—" not in straight


# -- windows and downloads -----------------------------------------------------------------------


def test_window_history_with_exact_amounts(app, world: DeskWorld) -> None:
    client = sign_in(app, "carla")
    page = client.get("/windows").text
    assert world.window_id in page and "November hours" in page and "otto" in page
    assert "real" in page and f"/files/previews/{world.preview.name}" in page
    detail = client.get(f"/windows/{world.window_id}").text
    # TE1 and TE5: 7.5 h each at their own rate of 150.00, USD, US01 (the test ERP rejects them).
    assert "US01" in detail and "USD" in detail and "15.0000" in detail and "2250.00" in detail
    # TE7: 2.25 h at 100.00 EUR, DE01, confirmed: its own line, never added to the dollars.
    assert re.search(
        r"DE01</td><td>EUR</td><td>confirmed</td><td>1</td>"
        r"<td class=\"num\">2.2500</td><td class=\"num\">225.00</td>",
        detail,
    )


def test_downloads_serve_files_read_only_and_refuse_traversal(app, world: DeskWorld) -> None:
    client = sign_in(app, "carla")
    got = client.get(f"/files/reports/{world.workbook.name}")
    assert got.status_code == 200 and got.content == world.workbook.read_bytes()
    assert "attachment" in got.headers["content-disposition"]
    pv = client.get(f"/files/previews/{world.preview.name}")
    assert pv.status_code == 200 and pv.content == world.preview.read_bytes()
    (world.folder / "reports" / ".hidden").write_text("x")
    outside = world.folder / "secret.txt"
    outside.write_text("secret")
    (world.folder / "reports" / "link.xlsx").symlink_to(outside)
    for path in (
        "/files/reports/..%2Fstaging.duckdb",
        "/files/reports/%2e%2e",
        "/files/reports/.hidden",
        "/files/reports/link.xlsx",
        "/files/etc/passwd",
        "/files/reports/..%5Csecret.txt",
        "/files/previews/nope.xlsx",
    ):
        assert client.get(path).status_code == 404, path
    assert client.get("/files/reports/../staging.duckdb").status_code == 404
    assert client.post(f"/files/reports/{world.workbook.name}").status_code == 405
    listing = client.get("/files").text
    assert world.workbook.name in listing and world.preview.name in listing
