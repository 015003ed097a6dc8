"""A real SMTP server for the digest tests: Debian's aiosmtpd (`python3-aiosmtpd`, run by the
system Python; `./dev test` installs it) on a free loopback port, writing a Maildir. The
fixture `smtp` points the STAGEPOST_DESK_SMTP_* settings at it and yields the Maildir."""

from __future__ import annotations

import mailbox
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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


def messages(box: Path) -> list:
    """The mails delivered, by recipient."""
    return sorted(mailbox.Maildir(str(box), create=False), key=lambda m: m["To"])
