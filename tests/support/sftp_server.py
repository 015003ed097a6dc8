"""A real OpenSSH sshd serving SFTP on a loopback port, for tests.

Why a real sshd: the behaviours the SFTP source must survive (host key checks,
key auth, posix-rename, connections dropping mid-transfer) are those of the
servers PSA vendors actually run; a mock would only test our assumptions.

The daemon runs `internal-sftp -d <root>` as the current user (root in CI, with
`PermitRootLogin prohibit-password`), with throwaway ed25519 keys. sshd forks a
separate process tree (in its own session) per connection, so stopping the
listener does not end open sessions: `stop()` and `kill_sessions()` find the
session processes by walking /proc for descendants of the listener.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SSHD = Path("/usr/sbin/sshd")
SKIP_REASON = "openssh-server not installed: .ci/run installs it"


def sshd_available() -> bool:
    """Whether a real sshd (and ssh-keygen) can be started here."""
    return SSHD.exists() and shutil.which("ssh-keygen") is not None


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generate_key(path: Path, passphrase: str = "", comment: str = "stagepost-test") -> Path:
    """An ed25519 key pair at `path` / `path.pub` (via ssh-keygen, the format sshd expects)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


@dataclass(frozen=True)
class ClientKeys:
    """Client key pairs: two authorised (one passphrase-protected) and one stranger."""

    key: Path
    encrypted_key: Path
    passphrase: str
    stranger_key: Path

    @classmethod
    def generate(cls, directory: Path) -> ClientKeys:
        passphrase = "correct horse battery staple 7f3a"
        return cls(
            key=generate_key(directory / "id_client"),
            encrypted_key=generate_key(directory / "id_client_enc", passphrase),
            passphrase=passphrase,
            stranger_key=generate_key(directory / "id_stranger"),
        )

    def authorized_keys(self) -> str:
        return "".join(Path(f"{k}.pub").read_text() for k in (self.key, self.encrypted_key))


def _sshd_version() -> tuple[int, int]:
    out = subprocess.run([str(SSHD), "-V"], capture_output=True, text=True).stderr
    m = re.search(r"OpenSSH_(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _children_map() -> dict[int, list[int]]:
    """ppid -> pids, from /proc (no psutil dependency)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


class SftpServer:
    """One sshd listener on 127.0.0.1:`port` with an SFTP root under `workdir`."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, keys: ClientKeys, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.keys = keys
        self.port = port or free_port()
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.root = self.workdir / "root"
        self.inbox = self.root / "inbox"
        self.archive = self.inbox / "archive"
        self.known_hosts = self.workdir / "known_hosts"
        self._etc = self.workdir / "etc"
        self._host_key_generation = 0
        self.host_key = self._new_host_key()
        self.log_path = self._etc / "sshd.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.write_known_hosts()

    # -- keys and config ----------------------------------------------------------------

    def _new_host_key(self) -> Path:
        self._host_key_generation += 1
        return generate_key(self._etc / f"host_ed25519_{self._host_key_generation}")

    def known_hosts_line(self) -> str:
        """This server's entry as ssh-keyscan would print it."""
        keytype, b64 = Path(f"{self.host_key}.pub").read_text().split()[:2]
        return f"[{self.host}]:{self.port} {keytype} {b64}\n"

    def write_known_hosts(self, path: Path | None = None) -> Path:
        path = path or self.known_hosts
        path.write_text(self.known_hosts_line())
        return path

    def _write_config(self) -> Path:
        self._etc.mkdir(parents=True, exist_ok=True)
        authorized = self._etc / "authorized_keys"
        authorized.write_text(self.keys.authorized_keys())
        lines = [
            "ListenAddress 127.0.0.1",
            f"Port {self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self._etc / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "PermitRootLogin prohibit-password",
            f"AllowUsers {self.user}",
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "PrintMotd no",
            "MaxStartups 50",
            "LogLevel INFO",
            f"Subsystem sftp internal-sftp -d {self.root}",
            f"ForceCommand internal-sftp -d {self.root}",
        ]
        if _sshd_version() >= (9, 8):
            lines.append("PerSourcePenalties no")  # fault tests fail logins on purpose
        cfg = self._etc / "sshd_config"
        cfg.write_text("\n".join(lines) + "\n")
        return cfg

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> SftpServer:
        """Start `sshd -D -e` and wait until it listens."""
        if self._proc is not None:
            raise RuntimeError("sshd already running")
        cfg = self._write_config()
        if os.getuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        start_offset = log.tell()
        try:
            self._proc = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(cfg)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(start_offset)
                text = f.read().decode(errors="replace")
            if "Server listening on" in text:
                atexit.register(self.stop)  # no orphaned sshd if a test run dies early
                return self
            if self._proc.poll() is not None:
                self._proc = None
                raise RuntimeError(f"sshd exited at start:\n{text}")
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"sshd did not start listening within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _session_tree(self) -> dict[int, list[int]]:
        """pid -> child pids for every descendant of the listener (the sessions)."""
        if self._proc is None:
            return {}
        children = _children_map()
        tree: dict[int, list[int]] = {}
        todo = list(children.get(self._proc.pid, []))
        while todo:
            pid = todo.pop()
            tree[pid] = children.get(pid, [])
            todo.extend(tree[pid])
        return tree

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (all descendants of the listener)."""
        return sorted(self._session_tree())

    def _signal_sessions(self, sig: signal.Signals, pids: list[int] | None = None) -> int:
        pids = self.session_pids() if pids is None else pids
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return len(pids)

    def kill_sessions(self, timeout: float = 2.0) -> int:
        """SIGKILL every open session (drops clients' connections); the listener stays up.

        Innermost processes die first and each parent reaps its child before it is
        killed itself, so nothing is left as a zombie of an init that does not reap.
        """
        self._signal_sessions(signal.SIGCONT)  # a frozen parent could not reap
        killed: set[int] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tree = self._session_tree()
            if not tree:
                break
            leaves = [pid for pid, kids in tree.items() if not kids and pid not in killed]
            self._signal_sessions(signal.SIGKILL, leaves)
            killed.update(leaves)
            time.sleep(0.002)
        return len(killed)

    def freeze_sessions(self) -> int:
        """SIGSTOP every open session: the server hangs without closing the connection."""
        return self._signal_sessions(signal.SIGSTOP)

    def stop(self) -> None:
        """Stop the listener and every session it started."""
        if self._proc is None:
            return
        atexit.unregister(self.stop)
        self.kill_sessions()
        proc, self._proc = self._proc, None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def restart_with_new_host_key(self) -> None:
        """Stop, then serve the same port and root with a fresh host key.

        known_hosts keeps the old key, so clients now see a changed host key (what a
        re-keyed or impostor server looks like).
        """
        self.stop()
        self.host_key = self._new_host_key()
        self.start()

    def __enter__(self) -> SftpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- client side --------------------------------------------------------------------

    def source_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Constructor keywords for an `SftpSource` pointed at this server (fast retries)."""
        kw: dict[str, Any] = dict(
            host=self.host,
            port=self.port,
            username=self.user,
            key_path=self.keys.key,
            known_hosts_path=self.known_hosts,
            inbox=str(self.inbox),
            stable_seconds=0.0,
            connect_timeout=5.0,
            io_timeout=10.0,
            retries=2,
            backoff=0.05,
        )
        kw.update(overrides)
        return kw

    def source(self, **overrides: Any):  # -> SftpSource (imported lazily: helper stays light)
        from connectors.sources.sftp import SftpSource

        return SftpSource(**self.source_kwargs(**overrides))
