"""A PSA drop folder on local disk (the embedded default and the demo)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from connectors.sources.base import (
    FileSource,
    RemoteFile,
    SourceError,
    is_candidate_name,
    marker_name,
    reason_file_name,
    reason_text,
)

#: How long after its last change an archived file is still checked for late writes.
LATE_WRITE_WINDOW = 24 * 3600


class LocalFolderSource(FileSource):
    """Files in `inbox`; landed files move to `archive`, refused ones to `rejected` (same file
    system: atomic rename).

    Completeness: with `done_markers`, a file counts only once `NAME.done` exists;
    otherwise nothing may have changed it (mtime and ctime) for `stable_seconds`: a file
    whose timestamps are older is taken at once, a younger one only if a second listing
    `stable_seconds` later finds it unchanged (0 disables this, for tests). Whatever the
    setting, ingestion never lands a file that changed between its listing and the commit.
    """

    def __init__(
        self,
        inbox: str | Path,
        archive: str | Path | None = None,
        *,
        rejected: str | Path | None = None,
        name: str = "local",
        pattern: str = "*",
        done_markers: bool = False,
        stable_seconds: float = 5.0,
    ) -> None:
        self.name = name
        self.inbox = Path(inbox)
        self.archive_dir = Path(archive) if archive else self.inbox / "archive"
        self.rejected_dir = Path(rejected) if rejected else self.archive_dir.parent / "rejected"
        self.pattern = pattern
        self.done_markers = done_markers
        self.stable_seconds = stable_seconds
        self.notices: dict[str, str] = {}
        self.waiting: list[str] = []

    @staticmethod
    def _file(name: str, st: os.stat_result) -> RemoteFile:
        return RemoteFile(name, st.st_size, st.st_mtime, st.st_ctime)

    def _listing(self) -> dict[str, RemoteFile]:
        if not self.inbox.is_dir():
            raise SourceError(f"inbox folder {self.inbox} does not exist")
        out: dict[str, RemoteFile] = {}
        notices: dict[str, str] = {}
        with os.scandir(self.inbox) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    out[e.name] = self._file(e.name, st)
                elif self.dataset_of(e.name) is not None and not stat.S_ISDIR(st.st_mode):
                    kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
                    notices[e.name] = f"{kind}: not taken (only regular files are landed)"
        self.notices = notices
        return out

    def _quiet(self, f: RemoteFile, now: float) -> bool:
        # ctime cannot be set back by a writer (mtime can: `touch -d`, `cp -p`).
        return now - max(f.mtime, f.ctime or f.mtime) >= self.stable_seconds

    def _path(self, name: str) -> Path:
        return self.inbox / Path(name).name

    def stat(self, name: str) -> RemoteFile | None:
        try:
            st = os.lstat(self._path(name))
        except FileNotFoundError:
            return None
        return self._file(name, st) if stat.S_ISREG(st.st_mode) else None

    def fetch(self, file: RemoteFile, dest_dir: Path) -> Path:
        # Local files are read in place: no copy of a possibly large export.
        path = self._path(file.name)
        if not path.is_file():
            raise SourceError(f"{path} disappeared before it could be read")
        return path

    def _move(self, name: str, dest: Path) -> None:
        src = self._path(name)
        if os.path.lexists(src):
            os.replace(src, dest / src.name)
        marker = marker_name(src.name)
        if marker and os.path.lexists(self.inbox / marker):
            os.replace(self.inbox / marker, dest / marker)

    def archive(self, file: RemoteFile) -> None:
        self.archive_dir.mkdir(parents=True, exist_ok=True)
        self._move(file.name, self.archive_dir)

    def written_after_archiving(self, dataset: str) -> list[RemoteFile]:
        """Archived `dataset` files written to after they were moved there: a writer that kept
        the file open and resumed after a pause longer than the quiet period. A rename sets
        ctime but not mtime, so an archived file whose mtime has caught up with its ctime was
        written (or touched) since."""
        if not self.archive_dir.is_dir():
            return []
        out: list[RemoteFile] = []
        recent = time.time() - LATE_WRITE_WINDOW
        with os.scandir(self.archive_dir) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                if not (stat.S_ISREG(st.st_mode) and recent < st.st_ctime <= st.st_mtime):
                    continue
                if self.dataset_of(e.name) == dataset and is_candidate_name(
                    e.name, self.pattern, self.classify
                ):
                    out.append(self._file(e.name, st))
        return sorted(out, key=lambda f: f.name)

    def restore(self, file: RemoteFile) -> bool:
        """Move an archived file back into the inbox, unless a file of that name is there."""
        src, dest = self.archive_dir / file.name, self._path(file.name)
        try:
            os.link(src, dest)  # never replaces a newer delivery of the same name
        except FileExistsError:
            return False
        os.unlink(src)
        return True

    def reject(self, file: RemoteFile, reason: str) -> str:
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        where = str(self.rejected_dir)
        note = self.rejected_dir / reason_file_name(file.name)
        tmp = note.with_name(f".{note.name}.part")
        tmp.write_text(reason_text(file, reason, where), encoding="utf-8")
        os.replace(tmp, note)  # the reason first: a file is never set aside unexplained
        self._move(file.name, self.rejected_dir)
        return where

    def rejected_names(self) -> set[str]:
        if not self.rejected_dir.is_dir():
            return set()
        return {n for n in os.listdir(self.rejected_dir) if not n.endswith(".reason.txt")}

    def put(self, files: dict[str, Path]) -> list[str]:
        from connectors.sources.archive import place

        return place(files, self.inbox, "{}.done" if self.done_markers else None)

    def describe(self) -> str:
        return f"local folder {self.inbox}"
