"""The daily digest, received by a real SMTP server the test starts: Debian's aiosmtpd
(`python3-aiosmtpd`, run by the system Python; `./dev test` installs it) writing a Maildir."""

from __future__ import annotations

import mailbox
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from desk import digest
from staging_models.db import StagingDB
from tests.support.desk_world import NOW, DeskWorld, build

SYSTEM_PYTHON = "/usr/bin/python3"


def _has_aiosmtpd() -> bool:
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", "import aiosmtpd"], timeout=30).returncode == 0
    except OSError:
        return False


@pytest.fixture
def smtp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """aiosmtpd on a free loopback port, delivering into a Maildir."""
    if not _has_aiosmtpd():
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's python3-aiosmtpd for the digest test")
        pytest.skip("Debian's python3-aiosmtpd is not installed (./dev test installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = tmp_path / "maildir"
    proc = subprocess.Popen(
        [
            SYSTEM_PYTHON,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{port}",
            "-c",
            "aiosmtpd.handlers.Mailbox",
            str(box),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)
    monkeypatch.setenv("STAGEPOST_DESK_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("STAGEPOST_DESK_SMTP_PORT", str(port))
    monkeypatch.setenv("STAGEPOST_DESK_SMTP_FROM", "stagepost@example.com")
    try:
        yield box
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def world(duck_db: StagingDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DeskWorld:
    w = build(duck_db, tmp_path, monkeypatch)
    monkeypatch.setenv("STAGEPOST_DESK_OWNER_EMAILS", '{"finance-ops": "fo@example.com"}')
    monkeypatch.setenv("STAGEPOST_DESK_BASE_URL", "https://desk.example.com")
    return w


def _messages(box: Path) -> list:
    return sorted(mailbox.Maildir(str(box), create=False), key=lambda m: m["To"])


def test_digest_of_new_exceptions_per_owner(world: DeskWorld, smtp: Path) -> None:
    sent, missing = digest.send(world.db, NOW + timedelta(hours=1))
    assert (sent, missing) == (1, ["hr-data"])  # hr-data has no address: reported
    (mail,) = _messages(smtp)
    assert mail["To"] == "fo@example.com" and mail["From"] == "stagepost@example.com"
    assert mail["Subject"] == "stagepost: 4 new, 0 overdue exceptions for finance-ops"
    body = mail.get_payload(decode=True).decode()
    assert "New since yesterday: 4" in body and "Overdue: 0" in body
    assert "time_entries TE2: TE_PROJECT_CLOSED" in body and "(no key): TE_KEY_MISSING" in body
    assert "https://desk.example.com/item?ds=time_entries&gk=TE2" in body
    assert "TE3" not in body  # hr-data's


def test_digest_of_overdue_exceptions(world: DeskWorld, smtp: Path, monkeypatch) -> None:
    monkeypatch.setenv(
        "STAGEPOST_DESK_OWNER_EMAILS",
        '{"finance-ops": "fo@example.com", "hr-data": "hr@example.com"}',
    )
    sent, missing = digest.send(world.db, NOW + timedelta(days=10))
    assert (sent, missing) == (2, [])
    fo, hr = _messages(smtp)
    assert fo["Subject"] == "stagepost: 0 new, 4 overdue exceptions for finance-ops"
    assert hr["Subject"] == "stagepost: 0 new, 1 overdue exceptions for hr-data"
    assert (
        "time_entries TE3: TE_UNKNOWN_EMPLOYEE (due 2026-11-24)"
        in hr.get_payload(decode=True).decode()
    )
