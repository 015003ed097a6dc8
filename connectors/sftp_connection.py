"""One SFTP connection (paramiko), shared by the PSA drop folder and the workbook upload.

Security: the server's host key must already be in a known_hosts file (unknown or
changed keys are refused, never added); the client logs in with a private key only
(no agent, no password, no key discovery). Secrets (the key passphrase, key
material) never appear in messages or logs: errors carry the host, paths and
fingerprints only.

Reliability: one connection per instance, opened lazily and reused. Each operation
runs under a retry loop (tenacity) that tells fatal failures (an operator must fix something:
host key, credentials, missing path) from transient ones (server down, connection
dropped, timeouts). Transient ones reconnect and retry with exponential backoff, then
surface as the subclass's retryable error.

Not thread-safe: use one instance per thread.
"""

from __future__ import annotations

import errno
import logging
import posixpath
import stat
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, TypeVar

import paramiko
import tenacity

log = logging.getLogger(__name__)

T = TypeVar("T")

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


class SftpError(Exception):
    """An SFTP problem an operator must fix (bad credentials, unknown host key...)."""


class RetryableSftpError(SftpError):
    """A transient SFTP problem (server down, connection dropped); retry later."""


class UnknownHostKeyError(paramiko.SSHException):
    """The server offered a host key for a host that known_hosts does not list."""

    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(f"Server {hostname!r} not found in known_hosts")
        self.hostname = hostname
        self.key = key


class RetryLater(Exception):
    """The remote side is not ready (a file changed under us): give up now, as retryable,
    without reconnecting; the next run or poll tries again."""


class _Transient(Exception):
    """A failure worth another attempt on a fresh connection (carries the original)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(cause)
        self.cause = cause


def _reason(exc: BaseException | None) -> str:
    """`Type: message` of the underlying failure, for logs and the final error."""
    if isinstance(exc, _Transient):
        exc = exc.cause
    if exc is None:
        return "unknown"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _RejectUnknownHost(paramiko.RejectPolicy):
    """RejectPolicy that raises a typed error, so it is classified without string matching."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise UnknownHostKeyError(hostname, key)


class SftpConnection:
    """A lazily opened, verified SFTP session with retries.

    Subclasses name the errors their callers catch (`error`, and `retryable_error`, a
    subclass of it) and run their operations through `_run`.
    """

    error: ClassVar[type[Exception]] = SftpError
    retryable_error: ClassVar[type[Exception]] = RetryableSftpError

    def __init__(
        self,
        *,
        host: str,
        username: str,
        key_path: str | Path,
        known_hosts_path: str | Path,
        port: int = 22,
        key_passphrase: str | None = None,
        connect_timeout: float = 10.0,
        io_timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.host = host
        self.port = int(port)
        self.username = username
        self.key_path = Path(key_path)
        self.known_hosts_path = Path(known_hosts_path)
        self.connect_timeout = connect_timeout
        self.io_timeout = io_timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.__passphrase = key_passphrase  # name-mangled: not in logs, reprs or vars dumps
        self._pkey: paramiko.PKey | None = None
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    def describe(self) -> str:
        return f"sftp://{self.username}@{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r})"

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

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        err = self.error
        try:
            key = paramiko.PKey.from_path(path, password=secret)
        except FileNotFoundError:
            raise err(f"client key file {path} does not exist: check key_path") from None
        except PermissionError:
            raise err(f"client key file {path} is not readable by this user") from None
        except TypeError as exc:
            # cryptography: "Password was not given but private key is encrypted", or
            # "Password was given but private key is not encrypted" (then load it plainly).
            if secret is None:
                raise err(f"client key {path} is encrypted: set key_passphrase") from None
            try:
                key = paramiko.PKey.from_path(path)
            except Exception:  # noqa: BLE001
                raise err(f"could not load client key {path} ({type(exc).__name__})") from None
        except paramiko.PasswordRequiredException:
            raise err(f"client key {path} is encrypted: set key_passphrase") from None
        except (ValueError, paramiko.SSHException, paramiko.UnknownKeyType) as exc:
            hint = (
                "wrong key_passphrase, or not an OpenSSH/PEM private key"
                if secret is not None
                else "not an OpenSSH/PEM private key"
            )
            raise err(f"could not load client key {path}: {hint} ({type(exc).__name__})") from None
        self._pkey = key
        return key

    def _connect(self) -> paramiko.SFTPClient:
        pkey = self._load_key()
        if not self.known_hosts_path.is_file():
            raise self.error(
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

    def _fatal(self, what: str, exc: BaseException) -> Exception | None:
        """The operator-facing error for a failure retrying cannot fix, else None."""
        kh = self.known_hosts_path
        err = self.error
        if isinstance(exc, paramiko.BadHostKeyException):
            return err(
                f"host key for {self._hostport} does not match known_hosts {kh} (server offered "
                f"{exc.key.get_name()} {exc.key.fingerprint}): if the server was re-keyed, "
                "verify the new fingerprint with its administrator and replace the entry; "
                "otherwise this may be a man-in-the-middle attack"
            )
        if isinstance(exc, UnknownHostKeyError):
            return err(
                f"host key for {self._hostport} not in known_hosts {kh}: add it with "
                f"`ssh-keyscan -p {self.port} {self.host} >> {kh}` after verifying its "
                f"fingerprint (server offered {exc.key.get_name()} {exc.key.fingerprint})"
            )
        if isinstance(exc, paramiko.PasswordRequiredException):
            return err(f"client key {self.key_path} is encrypted: set key_passphrase")
        if isinstance(exc, paramiko.AuthenticationException):
            return err(
                f"authentication as {self.username} on {self._hostport} with key "
                f"{self.key_path} was refused: check the user name and that the public key "
                "is in the server's authorized_keys"
            )
        if isinstance(exc, FileNotFoundError):
            return err(f"{what} on {self._hostport}: no such file or directory")
        if isinstance(exc, PermissionError):
            return err(
                f"{what} on {self._hostport}: permission denied (check the account's rights)"
            )
        if isinstance(exc, OSError) and exc.errno in _FATAL_ERRNOS:
            return err(f"{what}: {exc}")
        return None

    @staticmethod
    def _retryable(exc: BaseException) -> bool:
        # Fatal SSHException subclasses were classified before this is asked.
        # OSError covers refused/reset connections, NoValidConnectionsError, DNS failures,
        # TimeoutError from the channel timeout and paramiko's "Socket is closed".
        return isinstance(exc, paramiko.SSHException | paramiko.SFTPError | EOFError | OSError)

    def _run(self, what: str, op: Callable[[paramiko.SFTPClient], T]) -> T:
        """Run `op` on a live session; reconnect and retry transient failures with backoff.

        tenacity keeps the loop; this method only sorts failures: fatal ones and
        `RetryLater` raise at once, transient ones close the connection and go round again
        (delays `backoff * 2**(n-1)`, capped at `max_backoff`), the last one surfaces as
        `retryable_error`.
        """
        attempts = self.retries + 1

        def attempt() -> T:
            try:
                return op(self._session())
            except self.error:
                raise
            except Exception as exc:
                fatal = self._fatal(what, exc)
                if fatal is not None:
                    raise fatal from exc
                if isinstance(exc, RetryLater):
                    raise self.retryable_error(f"{what}: {exc}") from exc
                if not self._retryable(exc):
                    raise
                self.close()  # the next attempt opens a fresh connection
                raise _Transient(exc) from exc

        def warn(state: tenacity.RetryCallState) -> None:
            assert state.outcome is not None and state.next_action is not None
            log.warning(
                "%s on %s failed (attempt %d/%d): %s; retrying in %.2fs",
                what,
                self._hostport,
                state.attempt_number,
                attempts,
                _reason(state.outcome.exception()),
                state.next_action.sleep,
            )

        try:
            return tenacity.Retrying(
                retry=tenacity.retry_if_exception_type(_Transient),
                stop=tenacity.stop_after_attempt(attempts),
                wait=tenacity.wait_exponential(multiplier=self.backoff, max=self.max_backoff),
                before_sleep=warn,
                reraise=True,
            )(attempt)
        except _Transient as last:
            raise self.retryable_error(
                f"{what} on {self._hostport} failed after {attempts} attempt(s): {_reason(last)}"
            ) from last.cause

    def _ensure_dir(self, sftp: paramiko.SFTPClient, path: str) -> None:
        """Create the remote folder `path` and its parents unless they exist."""
        try:
            if stat.S_ISDIR(sftp.stat(path).st_mode or 0):
                return
            raise self.error(f"{path} on {self._hostport} exists but is not a directory")
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
