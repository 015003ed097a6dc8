"""Reconciliation workbooks uploaded to an SFTP folder, for controllers who fetch them there.

The upload writes a hidden `.NAME.part` file and renames it into place once the server
holds every byte, so whoever watches the folder never opens half a workbook. A
transient failure (server down, connection dropped) reconnects and starts the file
over; the connection itself (host-key check, key-only login, retries) is
`connectors.sftp_connection`'s.
"""

from __future__ import annotations

import logging
import posixpath
from pathlib import Path
from typing import Any

import paramiko

from connectors.sftp_connection import SftpConnection

log = logging.getLogger(__name__)


class UploadError(Exception):
    """An upload problem an operator must fix (host key, credentials, folder rights)."""


class RetryableUploadError(UploadError):
    """A transient upload problem (server down, connection dropped); run it again later."""


class SftpReportUpload(SftpConnection):
    """Uploads files into `folder` on an SFTP server, creating the folder if needed."""

    error = UploadError
    retryable_error = RetryableUploadError

    def __init__(self, *, folder: str, **connection: Any) -> None:
        super().__init__(**connection)
        if not folder:
            raise ValueError("folder must name the remote folder for the workbooks")
        self.folder = folder.rstrip("/") or "/"

    def describe(self) -> str:
        path = self.folder if self.folder.startswith("/") else f"/~/{self.folder}"
        return f"{super().describe()}{path}"

    def upload(self, local: Path) -> str:
        """Upload `local` under its own name; returns the remote path. Replaces a file of
        that name (a re-run of the same reconciliation writes the same workbook)."""
        local = Path(local)
        size = local.stat().st_size  # a missing local file fails here, before connecting
        remote = posixpath.join(self.folder, local.name)
        part = posixpath.join(self.folder, f".{local.name}.part")

        def op(sftp: paramiko.SFTPClient) -> None:
            self._ensure_dir(sftp, self.folder)
            # confirm=True stats the remote file and raises if its size is not `size`.
            sftp.put(str(local), part, confirm=True)
            sftp.posix_rename(part, remote)

        try:
            self._run(f"uploading {local.name} to {self.folder}", op)
        except BaseException:
            self._remove_quietly(part)
            raise
        log.info("uploaded %s (%d bytes) to %s", local.name, size, self.describe())
        return remote

    def _remove_quietly(self, path: str) -> None:
        """Best effort: a failed upload should not leave its `.part` file behind."""
        if self._sftp is None:
            return  # no live session: the server is gone, and so is the chance to clean up
        try:
            self._sftp.remove(path)
        except Exception:  # noqa: BLE001 - absent, or the connection broke: nothing to add
            pass
