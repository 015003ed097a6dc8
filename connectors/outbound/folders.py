"""Folders a delivery's files go to, whole: a local folder or an SFTP folder.

Each file is written under a hidden temporary name (`.NAME.part`) and renamed into place
once complete, so a reader never sees part of a file; the manifest goes last. Writing the
same delivery again (a re-run after a crash) replaces its files with the same bytes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

from connectors.report_upload import SftpReportUpload


class FileFolder(Protocol):
    """Somewhere whole files are delivered."""

    def put(self, name: str, data: bytes) -> None: ...

    def describe(self) -> str: ...


class LocalFolder:
    """A folder on this machine (or a mounted share)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def describe(self) -> str:
        return str(self.path)

    def put(self, name: str, data: bytes) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        part = self.path / f".{name}.part"
        with open(part, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name says they are
        os.replace(part, self.path / name)


class SftpFolder:
    """A folder on an SFTP server: the workbook upload's connection and whole-file upload
    (`connectors.report_upload`: host key verified, key-only login, retries, `.part` then
    rename)."""

    def __init__(self, *, folder: str, **connection: Any) -> None:
        self._upload = SftpReportUpload(folder=folder, **connection)

    def describe(self) -> str:
        return self._upload.describe()

    def put(self, name: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory(prefix="stagepost-outbound-") as tmp:
            local = Path(tmp) / name
            local.write_bytes(data)
            self._upload.upload(local)

    def close(self) -> None:
        self._upload.close()
