"""pytest fixtures for a real OpenSSH SFTP server (import via `pytest_plugins`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sftp_server import SKIP_REASON, ClientKeys, SftpServer, sshd_available


@pytest.fixture(scope="session")
def sftp_client_keys(tmp_path_factory: pytest.TempPathFactory) -> ClientKeys:
    """Throwaway client key pairs, generated once per test session."""
    if not sshd_available():
        pytest.skip(SKIP_REASON)
    return ClientKeys.generate(tmp_path_factory.mktemp("sftp-client-keys"))


@pytest.fixture
def sftp_server(tmp_path: Path, sftp_client_keys: ClientKeys) -> Iterator[SftpServer]:
    """A running sshd (own port, host key and SFTP root) for one test; stopped after it."""
    server = SftpServer(tmp_path / "sftp", sftp_client_keys).start()
    try:
        yield server
    finally:
        server.stop()
