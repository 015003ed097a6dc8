"""The desk's commands: `stagepost-desk-user` (add, list, disable; passwords from stdin, never
the command line) and `stagepost-desk` (serves on 127.0.0.1, gives the embedded DuckDB file
back between requests, and says "busy" when a Dagster run holds it)."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from desk import users
from desk.app import create_app
from staging_models.db import StagingDB, dispose_all, staging_db

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StagingDB:
    monkeypatch.setenv("STAGEPOST_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STAGEPOST_STAGING_URL", f"duckdb:///{tmp_path / 'staging.duckdb'}")
    db = staging_db()
    yield db
    dispose_all()


def test_user_command_adds_lists_and_disables(staging: StagingDB, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long enough secret\n"))
    assert users.main(["add", "anna", "--role", "operations", "--email", "a@example.com"]) == 0
    assert users.authenticate(staging, "anna", "a long enough secret").role == "operations"
    assert users.authenticate(staging, "anna", "a long enough secreT") is None
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert users.main(["add", "bob", "--role", "controller"]) == 2
    assert "at least 12 characters" in capsys.readouterr().err
    assert users.main(["add", "proxy", "--role", "controller", "--proxy-only"]) == 0
    assert users.authenticate(staging, "proxy", "") is None  # no password to match
    assert users.find_user(staging, "proxy")[0].role == "controller"
    users.main(["list"])
    out = capsys.readouterr().out
    assert "anna\toperations\tactive\ta@example.com" in out and "proxy\tcontroller" in out
    assert users.main(["disable", "anna"]) == 0
    assert users.authenticate(staging, "anna", "a long enough secret") is None
    assert users.main(["disable", "nobody"]) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_desk_server_serves_on_localhost_and_releases_duckdb(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "STAGEPOST_DATA_DIR": str(tmp_path),
        "STAGEPOST_DESK_PORT": str(port),
        "STAGEPOST_DESK_QUIET": "1",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "desk.server"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as r:
                    assert r.status == 200 and "Sign in" in r.read().decode()
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline
                time.sleep(0.2)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/files/reports/x.xlsx", timeout=5)
        assert e.value.code == 401
        # Between requests the desk holds no lock on the embedded file: another process opens it.
        import duckdb

        con = duckdb.connect(str(tmp_path / "staging.duckdb"))
        assert con.execute("SELECT count(*) FROM desk_users").fetchone() == (0,)
        con.close()
    finally:
        proc.terminate()
        proc.wait(15)


def test_busy_embedded_staging_is_a_503_not_a_crash(staging: StagingDB, tmp_path: Path) -> None:
    users.add_user(staging, "carla", "controller", password="correct horse battery")
    client = TestClient(create_app(staging, secret=b"k" * 32, release_duckdb=True))
    token = re.search(r'name="login_token" value="([^"]+)"', client.get("/login").text)[1]
    client.post(
        "/login",
        data={"login_token": token, "username": "carla", "password": "correct horse battery"},
    )
    assert client.get("/").status_code == 200
    holder = subprocess.Popen(  # a Dagster run writing: another process holds the file
        [
            sys.executable,
            "-c",
            f"import duckdb, sys, time; c = duckdb.connect({str(tmp_path / 'staging.duckdb')!r}); "
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        resp = client.get("/")
        assert resp.status_code == 503 and "busy or unreachable" in resp.text
    finally:
        holder.kill()
        holder.wait(10)
    assert client.get("/").status_code == 200
