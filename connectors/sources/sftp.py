"""A PSA drop folder on an SFTP server (paramiko), for firms whose PSA exports by SFTP.

Security: the server's host key must already be in a known_hosts file (unknown or
changed keys are refused, never added); the client logs in with a private key only
(no agent, no password, no key discovery). Secrets (the key passphrase, key
material) never appear in messages or logs: errors carry the host, paths and
fingerprints only.

Reliability: one connection per source instance, opened lazily and reused. Each
operation runs under a retry loop that tells fatal failures (an operator must fix
something: host key, credentials, missing path) from transient ones (server down,
connection dropped, timeouts). Transient ones reconnect and retry with exponential
backoff, then surface as `RetryableSourceError`; a download that breaks midway
resumes from the bytes already received instead of starting over.

Not thread-safe: use one instance per thread.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import paramiko

from connectors.sources.base import (
    FileSource,
    RemoteFile,
    RetryableSourceError,
    SourceError,
    safe_local_name,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_CHUNK = 1 << 20
# Local file-system failures that retrying within seconds cannot fix.
_FATAL_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.EACCES,
        errno.EPERM,
        errno.ENOSPC,
        errno.EROFS,
        errno.EDQUOT,
        errno.EISDIR,
        errno.ENOTDIR,
    }
)


class UnknownHostKeyError(paramiko.SSHException):
    """The server offered a host key for a host that known_hosts does not list."""

    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(f"Server {hostname!r} not found in known_hosts")
        self.hostname = hostname
        self.key = key


class _RejectUnknownHost(paramiko.RejectPolicy):
    """RejectPolicy that raises a typed error, so it is classified without string matching."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise UnknownHostKeyError(hostname, key)


class _ChangedWhileFetching(Exception):
    """The remote file is not the one that was listed (rewritten, grown or shrunk)."""


class SftpSource(FileSource):
    """Files in `inbox` on an SFTP server; landed files are renamed into `archive` there.

    Completeness: with `done_markers`, a file counts only once `NAME.done` exists;
    otherwise its size and mtime must be unchanged across two listings taken
    `stable_seconds` apart (SFTP mtimes have whole-second resolution, so the size
    carries most of the signal for short intervals).
    """

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
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.name = name
        self.host = host
        self.port = int(port)
        self.username = username
        self.key_path = Path(key_path)
        self.known_hosts_path = Path(known_hosts_path)
        self.inbox = inbox.rstrip("/") or "/"
        self.archive_dir = (archive.rstrip("/") or "/") if archive else f"{self.inbox}/archive"
        self.pattern = pattern
        self.done_markers = done_markers
        self.stable_seconds = stable_seconds
        self.connect_timeout = connect_timeout
        self.io_timeout = io_timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        # None = paramiko's unlimited pipelining (fastest); the SSH channel window
        # bounds what is buffered in memory either way.
        self.prefetch_requests = prefetch_requests
        self.__passphrase = key_passphrase  # name-mangled: not in logs, reprs or vars dumps
        self._pkey: paramiko.PKey | None = None
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    # -- connection -----------------------------------------------------------------

    def __repr__(self) -> str:
        return f"SftpSource({self.describe()!r})"

    def close(self) -> None:
        """Close the connection (a later operation reconnects)."""
        sftp, client = self._sftp, self._client
        self._sftp = self._client = None
        for closable in (sftp, client):
            if closable is not None:
                try:
                    closable.close()
                except Exception:  # noqa: BLE001 - closing a broken connection may fail any way
                    pass

    @property
    def _hostport(self) -> str:
        """The host the way known_hosts spells it (`[host]:port` unless port 22)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def _load_key(self) -> paramiko.PKey:
        """The client key, decrypted once; errors never echo the passphrase or key bytes."""
        if self._pkey is not None:
            return self._pkey
        path = self.key_path
        secret = None if self.__passphrase is None else self.__passphrase.encode()
        try:
            key = paramiko.PKey.from_path(path, password=secret)
        except FileNotFoundError:
            raise SourceError(f"client key file {path} does not exist: check key_path") from None
        except PermissionError:
            raise SourceError(f"client key file {path} is not readable by this user") from None
        except TypeError as exc:
            # cryptography: "Password was not given but private key is encrypted", or
            # "Password was given but private key is not encrypted" (then load it plainly).
            if secret is None:
                raise SourceError(f"client key {path} is encrypted: set key_passphrase") from None
            try:
                key = paramiko.PKey.from_path(path)
            except Exception:  # noqa: BLE001
                raise SourceError(
                    f"could not load client key {path} ({type(exc).__name__})"
                ) from None
        except paramiko.PasswordRequiredException:
            raise SourceError(f"client key {path} is encrypted: set key_passphrase") from None
        except (ValueError, paramiko.SSHException, paramiko.UnknownKeyType) as exc:
            hint = (
                "wrong key_passphrase, or not an OpenSSH/PEM private key"
                if secret is not None
                else "not an OpenSSH/PEM private key"
            )
            raise SourceError(
                f"could not load client key {path}: {hint} ({type(exc).__name__})"
            ) from None
        self._pkey = key
        return key

    def _connect(self) -> paramiko.SFTPClient:
        pkey = self._load_key()
        if not self.known_hosts_path.is_file():
            raise SourceError(
                f"known_hosts file {self.known_hosts_path} does not exist: create it with "
                f"`ssh-keyscan -p {self.port} {self.host}` after verifying the fingerprint"
            )
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(str(self.known_hosts_path))
            client.set_missing_host_key_policy(_RejectUnknownHost())
            client.connect(
                self.host,
                port=self.port,
                username=self.username,
                pkey=pkey,
                allow_agent=False,
                look_for_keys=False,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                channel_timeout=self.connect_timeout,
            )
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(self.io_timeout)
        except BaseException:
            client.close()
            raise
        self._client, self._sftp = client, sftp
        log.debug("connected to %s", self.describe())
        return sftp

    def _session(self) -> paramiko.SFTPClient:
        """The open SFTP session, connecting first if there is none or it died."""
        if self._sftp is not None and self._client is not None:
            transport = self._client.get_transport()
            if transport is not None and transport.is_active():
                return self._sftp
            self.close()
        return self._connect()

    # -- failure handling -------------------------------------------------------------

    def _fatal(self, what: str, exc: BaseException) -> SourceError | None:
        """The operator-facing error for a failure retrying cannot fix, else None."""
        kh = self.known_hosts_path
        if isinstance(exc, paramiko.BadHostKeyException):
            return SourceError(
                f"host key for {self._hostport} does not match known_hosts {kh} (server offered "
                f"{exc.key.get_name()} {exc.key.fingerprint}): if the server was re-keyed, "
                "verify the new fingerprint with its administrator and replace the entry; "
                "otherwise this may be a man-in-the-middle attack"
            )
        if isinstance(exc, UnknownHostKeyError):
            return SourceError(
                f"host key for {self._hostport} not in known_hosts {kh}: add it with "
                f"`ssh-keyscan -p {self.port} {self.host} >> {kh}` after verifying its "
                f"fingerprint (server offered {exc.key.get_name()} {exc.key.fingerprint})"
            )
        if isinstance(exc, paramiko.PasswordRequiredException):
            return SourceError(f"client key {self.key_path} is encrypted: set key_passphrase")
        if isinstance(exc, paramiko.AuthenticationException):
            return SourceError(
                f"authentication as {self.username} on {self._hostport} with key "
                f"{self.key_path} was refused: check the user name and that the public key "
                "is in the server's authorized_keys"
            )
        if isinstance(exc, FileNotFoundError):
            return SourceError(f"{what} on {self._hostport}: no such file or directory")
        if isinstance(exc, PermissionError):
            return SourceError(
                f"{what} on {self._hostport}: permission denied (check the account's rights)"
            )
        if isinstance(exc, OSError) and exc.errno in _FATAL_ERRNOS:
            return SourceError(f"{what}: {exc}")
        return None

    @staticmethod
    def _retryable(exc: BaseException) -> bool:
        # Fatal SSHException subclasses were classified before this is asked.
        # OSError covers refused/reset connections, NoValidConnectionsError, DNS failures,
        # TimeoutError from the channel timeout and paramiko's "Socket is closed".
        return isinstance(exc, paramiko.SSHException | paramiko.SFTPError | EOFError | OSError)

    def _run(self, what: str, op: Callable[[paramiko.SFTPClient], T]) -> T:
        """Run `op` on a live session; reconnect and retry transient failures with backoff."""
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return op(self._session())
            except SourceError:
                raise
            except Exception as exc:
                fatal = self._fatal(what, exc)
                if fatal is not None:
                    raise fatal from exc
                if isinstance(exc, _ChangedWhileFetching):
                    raise RetryableSourceError(f"{what}: {exc}") from exc
                if not self._retryable(exc):
                    raise
                self.close()  # the next attempt opens a fresh connection
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if attempt == attempts:
                    raise RetryableSourceError(
                        f"{what} on {self._hostport} failed after {attempts} attempt(s): {reason}"
                    ) from exc
                delay = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
                log.warning(
                    "%s on %s failed (attempt %d/%d): %s; retrying in %.2fs",
                    what,
                    self._hostport,
                    attempt,
                    attempts,
                    reason,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

    # -- FileSource -----------------------------------------------------------------------

    def _remote(self, file_name: str) -> str:
        """The remote path of a listed base name; names with a directory part are refused."""
        if not file_name or file_name in {".", ".."} or any(c in file_name for c in "/\\\0"):
            raise SourceError(f"refusing remote file name {file_name!r}: not a plain base name")
        return posixpath.join(self.inbox, file_name)

    def _listing(self) -> dict[str, RemoteFile]:
        attrs = self._run(f"listing {self.inbox}", lambda s: s.listdir_attr(self.inbox))
        out: dict[str, RemoteFile] = {}
        for a in attrs:  # one entry per directory entry, not per data row
            name = a.filename
            if a.st_mode is not None and not stat.S_ISREG(a.st_mode):
                continue
            if any(c in name for c in "/\\\0") or name in {".", ".."}:
                log.warning("ignoring remote entry with unsafe name %r in %s", name, self.inbox)
                continue
            out[name] = RemoteFile(name, int(a.st_size or 0), float(a.st_mtime or 0))
        return out

    def fetch(self, file: RemoteFile, dest_dir: Path) -> Path:
        """Download into `dest_dir` via a hidden temp file, then rename it into place.

        The final path only ever holds a complete file of the listed size. A broken
        connection resumes from the bytes already written; if the remote file changed
        since it was listed, the download is dropped (`RetryableSourceError`: the next
        poll lists it again).
        """
        remote = self._remote(file.name)
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        final = dest_dir / safe_local_name(file.name)
        tmp = dest_dir / f".{final.name}.part"
        tmp.unlink(missing_ok=True)  # a leftover may come from another version of the file
        try:
            self._run(f"fetching {remote}", lambda s: self._download(s, remote, file, tmp))
            if tmp.stat().st_size != file.size:  # _download checks too; never publish short
                raise RetryableSourceError(f"fetching {remote}: size mismatch after download")
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return final

    def _download(
        self, sftp: paramiko.SFTPClient, remote: str, file: RemoteFile, tmp: Path
    ) -> None:
        st = sftp.stat(remote)
        if st.st_size != file.size or int(st.st_mtime or 0) != int(file.mtime):
            raise _ChangedWhileFetching(
                f"{remote} changed since it was listed (size {file.size} -> {st.st_size}); "
                "it will be listed again at the next poll"
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
            raise _ChangedWhileFetching(f"{remote} changed while it was being downloaded")

    def _ensure_dir(self, sftp: paramiko.SFTPClient, path: str) -> None:
        try:
            if stat.S_ISDIR(sftp.stat(path).st_mode or 0):
                return
            raise SourceError(f"archive path {path} on {self._hostport} is not a directory")
        except FileNotFoundError:
            pass
        parent = posixpath.dirname(path)
        if parent and parent != path:
            self._ensure_dir(sftp, parent)
        try:
            sftp.mkdir(path)
        except OSError:
            if not stat.S_ISDIR(sftp.stat(path).st_mode or 0):  # lost a race, or a real error
                raise

    def _move(self, sftp: paramiko.SFTPClient, name: str) -> bool:
        """posix_rename inbox/name -> archive/name (replacing); False if it is already gone."""
        src = posixpath.join(self.inbox, name)
        try:
            sftp.posix_rename(src, posixpath.join(self.archive_dir, name))
            return True
        except FileNotFoundError:
            try:
                sftp.stat(src)
            except FileNotFoundError:
                return False
            raise

    def archive(self, file: RemoteFile) -> None:
        self._remote(file.name)  # validates the name

        def op(sftp: paramiko.SFTPClient) -> None:
            self._ensure_dir(sftp, self.archive_dir)  # one stat; someone may have removed it
            if not self._move(sftp, file.name):
                log.info("%s already archived or removed", file.name)
            self._move(sftp, f"{file.name}.done")

        self._run(f"archiving {file.name} into {self.archive_dir}", op)

    def describe(self) -> str:
        path = self.inbox if self.inbox.startswith("/") else f"/~/{self.inbox}"
        return f"sftp://{self.username}@{self.host}:{self.port}{path}"
