"""A PSA drop folder on local disk (the embedded default and the demo)."""

from __future__ import annotations

import os
from pathlib import Path

from connectors.sources.base import FileSource, RemoteFile, SourceError


class LocalFolderSource(FileSource):
    """Files in `inbox`; landed files move to `archive` (same file system: atomic rename).

    Completeness: with `done_markers`, a file counts only once `NAME.done` exists;
    otherwise its size and mtime must be unchanged across two listings taken
    `stable_seconds` apart (0 disables the second listing, for tests and demos).
    """

    def __init__(
        self,
        inbox: str | Path,
        archive: str | Path | None = None,
        *,
        name: str = "local",
        pattern: str = "*",
        done_markers: bool = False,
        stable_seconds: float = 0.0,
    ) -> None:
        self.name = name
        self.inbox = Path(inbox)
        self.archive_dir = Path(archive) if archive else self.inbox / "archive"
        self.pattern = pattern
        self.done_markers = done_markers
        self.stable_seconds = stable_seconds

    def _listing(self) -> dict[str, RemoteFile]:
        if not self.inbox.is_dir():
            raise SourceError(f"inbox folder {self.inbox} does not exist")
        out: dict[str, RemoteFile] = {}
        with os.scandir(self.inbox) as it:
            for e in it:
                if e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    out[e.name] = RemoteFile(e.name, st.st_size, st.st_mtime)
        return out

    def fetch(self, file: RemoteFile, dest_dir: Path) -> Path:
        # Local files are read in place: no copy of a possibly large export.
        path = self.inbox / Path(file.name).name
        if not path.is_file():
            raise SourceError(f"{path} disappeared before it could be read")
        return path

    def archive(self, file: RemoteFile) -> None:
        self.archive_dir.mkdir(parents=True, exist_ok=True)
        src = self.inbox / Path(file.name).name
        if src.exists():
            os.replace(src, self.archive_dir / src.name)
        marker = self.inbox / f"{src.name}.done"
        if marker.exists():
            os.replace(marker, self.archive_dir / marker.name)

    def describe(self) -> str:
        return f"local folder {self.inbox}"
