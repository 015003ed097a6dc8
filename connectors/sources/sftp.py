"""A PSA drop folder on an SFTP server (paramiko), for firms whose PSA exports by SFTP.

The connection (host-key verification, key-only login, secrets kept out of messages,
retries that tell fatal from transient failures) is `connectors.sftp_connection`'s.
Here: which files are complete, a download that only ever publishes a whole file and
resumes from the bytes already received when the connection breaks midway, and the
archive move once a load is committed.

Not thread-safe: use one instance per thread.
"""

from __future__ import annotations

import logging
import os
import posixpath
import stat
from pathlib import Path

import paramiko
from paramiko.sftp import CMD_CLOSE, CMD_HANDLE, CMD_NAME, CMD_OPENDIR, CMD_READDIR
from paramiko.sftp_attr import SFTPAttributes

from connectors.sftp_connection import RetryLater, SftpConnection
from connectors.sources.base import (
    FileSource,
    RemoteFile,
    RetryableSourceError,
    SourceError,
    display_name,
    marker_name,
    reason_file_name,
    reason_text,
    safe_local_name,
)

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


class _ChangedWhileFetching(RetryLater):
    """The remote file is not the one that was listed (rewritten, grown or shrunk)."""


def _raw(path: str) -> bytes:
    """A remote path as the bytes the server listed (names that are not UTF-8 included)."""
    return path.encode("utf-8", "surrogateescape")


def listdir_raw(sftp: paramiko.SFTPClient, path: str) -> list[SFTPAttributes]:
    """`listdir_attr`, but names that are not valid UTF-8 come back as surrogates instead of
    failing the whole listing (paramiko decodes every name strictly).

    Uses paramiko's request layer (`_request`), which `listdir_attr` itself is built on.
    """
    t, msg = sftp._request(CMD_OPENDIR, _raw(path))
    if t != CMD_HANDLE:
        raise paramiko.SFTPError("Expected handle")
    handle = msg.get_binary()
    out: list[SFTPAttributes] = []
    try:
        while True:
            try:
                t, msg = sftp._request(CMD_READDIR, handle)
            except EOFError:  # end of the directory
                break
            if t != CMD_NAME:
                raise paramiko.SFTPError("Expected name response")
            for _ in range(msg.get_int()):
                name = msg.get_string().decode("utf-8", "surrogateescape")
                msg.get_string()  # longname
                attr = SFTPAttributes._from_msg(msg, name)
                if name not in {".", ".."}:
                    out.append(attr)
    finally:
        sftp._request(CMD_CLOSE, handle)
    return out


class SftpSource(SftpConnection, FileSource):
    """Files in `inbox` on an SFTP server; landed files are renamed into `archive` there.

    Completeness: with `done_markers`, a file counts only once `NAME.done` exists;
    otherwise its size and mtime must be unchanged across two listings taken
    `stable_seconds` apart (SFTP mtimes have whole-second resolution, so the size
    carries most of the signal for short intervals).
    """

    error = SourceError
    retryable_error = RetryableSourceError

    def __init__(
        self,
        *,
        host: str,
        username: str,
        key_path: str | Path,
        known_hosts_path: str | Path,
        inbox: str,
        port: int = 22,
        key_passphrase: str | None = None,
        archive: str | None = None,
        rejected: str | None = None,
        name: str = "sftp",
        pattern: str = "*",
        done_markers: bool = False,
        stable_seconds: float = 5.0,
        connect_timeout: float = 10.0,
        io_timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        prefetch_requests: int | None = None,
    ) -> None:
        super().__init__(
            host=host,
            username=username,
            key_path=key_path,
            known_hosts_path=known_hosts_path,
            port=port,
            key_passphrase=key_passphrase,
            connect_timeout=connect_timeout,
            io_timeout=io_timeout,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        self.name = name
        self.inbox = inbox.rstrip("/") or "/"
        self.archive_dir = (archive.rstrip("/") or "/") if archive else f"{self.inbox}/archive"
        self.rejected_dir = (
            (rejected.rstrip("/") or "/")
            if rejected
            else posixpath.join(posixpath.dirname(self.archive_dir), "rejected")
        )
        self.notices: dict[str, str] = {}
        self.waiting: list[str] = []
        self.pattern = pattern
        self.done_markers = done_markers
        self.stable_seconds = stable_seconds
        # None = paramiko's unlimited pipelining (fastest); the SSH channel window
        # bounds what is buffered in memory either way.
        self.prefetch_requests = prefetch_requests

    # -- FileSource -----------------------------------------------------------------------

    def _remote(self, file_name: str) -> str:
        """The remote path of a listed base name; names with a directory part are refused."""
        if not file_name or file_name in {".", ".."} or any(c in file_name for c in "/\\\0"):
            raise SourceError(f"refusing remote file name {file_name!r}: not a plain base name")
        return posixpath.join(self.inbox, file_name)

    def _listing(self) -> dict[str, RemoteFile]:
        attrs = self._run(f"listing {self.inbox}", lambda s: listdir_raw(s, self.inbox))
        out: dict[str, RemoteFile] = {}
        notices: dict[str, str] = {}
        for a in attrs:  # one entry per directory entry, not per data row
            name = a.filename
            if any(c in name for c in "/\\\0") or name in {".", ".."}:
                log.warning("ignoring remote entry with unsafe name %r in %s", name, self.inbox)
                if self.dataset_of(name.replace("\\", "/").rsplit("/", 1)[-1]) or self.dataset_of(
                    name
                ):
                    notices[display_name(name)] = (
                        "a name with a path separator: not taken and not moved (a server may "
                        "read it as a path); remove or rename it on the server"
                    )
                continue
            if a.st_mode is not None and not stat.S_ISREG(a.st_mode):
                if self.dataset_of(name) is not None and not stat.S_ISDIR(a.st_mode):
                    kind = "a symbolic link" if stat.S_ISLNK(a.st_mode) else "not a regular file"
                    notices[name] = f"{kind}: not taken (only regular files are landed)"
                continue
            out[name] = RemoteFile(name, int(a.st_size or 0), float(a.st_mtime or 0))
        self.notices = notices
        return out

    def stat(self, name: str) -> RemoteFile | None:
        remote = self._remote(name)

        def op(sftp: paramiko.SFTPClient) -> RemoteFile | None:
            try:
                st = sftp.lstat(_raw(remote))
            except FileNotFoundError:
                return None
            if st.st_mode is not None and not stat.S_ISREG(st.st_mode):
                return None
            return RemoteFile(name, int(st.st_size or 0), float(st.st_mtime or 0))

        return self._run(f"checking {display_name(name)}", op)

    def fetch(self, file: RemoteFile, dest_dir: Path) -> Path:
        """Download into `dest_dir` via a hidden temp file, then rename it into place.

        The final path only ever holds a complete file of the listed size. A broken
        connection resumes from the bytes already written; if the remote file changed
        since it was listed, the download is dropped (`RetryableSourceError`: the next
        poll lists it again).
        """
        remote = _raw(self._remote(file.name))
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        final = dest_dir / safe_local_name(file.name)
        tmp = dest_dir / f".{final.name}.part"
        tmp.unlink(missing_ok=True)  # a leftover may come from another version of the file
        try:
            what = f"fetching {display_name(self._remote(file.name))}"
            self._run(what, lambda s: self._download(s, remote, file, tmp))
            if tmp.stat().st_size != file.size:  # _download checks too; never publish short
                raise RetryableSourceError(f"{what}: size mismatch after download")
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return final

    def _download(
        self, sftp: paramiko.SFTPClient, remote: bytes, file: RemoteFile, tmp: Path
    ) -> None:
        st = sftp.stat(remote)
        if st.st_size != file.size or int(st.st_mtime or 0) != int(file.mtime):
            raise _ChangedWhileFetching(
                f"{file.display} changed since it was listed (size {file.size} -> "
                f"{st.st_size}); it will be listed again at the next poll"
            )
        with open(tmp, "ab") as out:
            offset = out.seek(0, os.SEEK_END)
            if offset:
                log.info("resuming %s at byte %d of %d", remote, offset, file.size)
            if offset < file.size:
                with sftp.open(remote, "rb", bufsize=_CHUNK) as rf:
                    rf.seek(offset)
                    rf.prefetch(file.size, self.prefetch_requests)
                    while offset < file.size:
                        block = rf.read(min(_CHUNK, file.size - offset))
                        if not block:
                            # paramiko reports a dropped channel as EOF here; retrying
                            # resumes, or the stat above sees that the file shrank.
                            raise EOFError(f"short read at byte {offset} of {file.size}")
                        out.write(block)
                        offset += len(block)
        st = sftp.stat(remote)
        if st.st_size != file.size or int(st.st_mtime or 0) != int(file.mtime):
            raise _ChangedWhileFetching(f"{file.display} changed while it was being downloaded")

    def _move(self, sftp: paramiko.SFTPClient, name: str, dest_dir: str) -> bool:
        """posix_rename inbox/name -> dest_dir/name (replacing); False if it is already gone."""
        src = _raw(posixpath.join(self.inbox, name))
        try:
            sftp.posix_rename(src, _raw(posixpath.join(dest_dir, name)))
            return True
        except FileNotFoundError:
            try:
                sftp.lstat(src)
            except FileNotFoundError:
                return False
            raise

    def _move_with_marker(self, sftp: paramiko.SFTPClient, name: str, dest_dir: str) -> None:
        self._ensure_dir(sftp, dest_dir)  # one stat; someone may have removed it
        if not self._move(sftp, name, dest_dir):
            log.info("%s already moved or removed", display_name(name))
        marker = marker_name(name)
        if marker:
            self._move(sftp, marker, dest_dir)

    def archive(self, file: RemoteFile) -> None:
        self._remote(file.name)  # validates the name
        self._run(
            f"archiving {file.display} into {self.archive_dir}",
            lambda s: self._move_with_marker(s, file.name, self.archive_dir),
        )

    def reject(self, file: RemoteFile, reason: str) -> str:
        self._remote(file.name)  # validates the name
        note = posixpath.join(self.rejected_dir, reason_file_name(file.name))
        text = reason_text(file, reason, self.rejected_dir).encode("utf-8")

        def op(sftp: paramiko.SFTPClient) -> None:
            self._ensure_dir(sftp, self.rejected_dir)
            # The reason first (whole, then renamed): a file is never set aside unexplained.
            part = posixpath.join(self.rejected_dir, f".{posixpath.basename(note)}.part")
            with sftp.open(part, "wb") as out:
                out.write(text)
            sftp.posix_rename(part, note)
            self._move_with_marker(sftp, file.name, self.rejected_dir)

        self._run(f"setting {file.display} aside into {self.rejected_dir}", op)
        return self.rejected_dir

    def rejected_names(self) -> set[str]:
        def op(sftp: paramiko.SFTPClient) -> set[str]:
            try:
                attrs = listdir_raw(sftp, self.rejected_dir)
            except FileNotFoundError:
                return set()
            return {a.filename for a in attrs if not a.filename.endswith(".reason.txt")}

        return self._run(f"listing {self.rejected_dir}", op)

    def describe(self) -> str:
        path = self.inbox if self.inbox.startswith("/") else f"/~/{self.inbox}"
        return f"sftp://{self.username}@{self.host}:{self.port}{path}"
