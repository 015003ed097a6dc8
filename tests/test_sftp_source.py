"""SftpSource against a real OpenSSH sshd: completeness, host keys, auth, faults, big files."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from pathlib import Path

import pytest

from connectors.sources.base import RemoteFile, RetryableSourceError, SourceError
from tests.support.sftp_server import SftpServer


def put(server: SftpServer, name: str, data: bytes) -> Path:
    """A file as the PSA would have delivered it (written straight into the SFTP root)."""
    path = server.inbox / name
    path.write_bytes(data)
    return path


def put_large(path: Path, size: int) -> None:
    """`size` bytes of a random block with a prime length repeated: an offset error in a
    resumed or pipelined download can never line up with the pattern and go unnoticed."""
    block = os.urandom(1_000_003)
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
        f.write(block[: size % len(block)])


def same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(1 << 22), fb.read(1 << 22)
            if ca != cb:
                return False
            if not ca:
                return True


def logins(server: SftpServer) -> int:
    return server.log().count("Accepted publickey")


def test_list_fetch_archive_reuses_one_connection(sftp_server: SftpServer, tmp_path: Path):
    put(sftp_server, "time_entries_2024-06.csv", b"entry_id,hours\n1,7.50\n")
    put(sftp_server, "employees.csv", b"employee_id\nE1\n")
    put(sftp_server, "readme.txt", b"not a dataset")
    put(sftp_server, ".time_entries_hidden.csv", b"dotfile")
    put(sftp_server, "projects.csv.part", b"upload in progress")
    (sftp_server.inbox / "projects_dir.csv").mkdir()  # a directory is never a file
    dest = tmp_path / "landing"

    with sftp_server.source() as src:
        files = src.list_complete()
        assert [(f.name, f.size) for f in files] == [
            ("employees.csv", 15),
            ("time_entries_2024-06.csv", 22),
        ]
        for f in files:
            local = src.fetch(f, dest)
            assert local.parent == dest
            assert local.read_bytes() == (sftp_server.inbox / f.name).read_bytes()
        for f in files:
            src.archive(f)
        src.archive(files[0])  # already archived: a no-op, not an error
        assert src.list_complete() == []

    assert sorted(p.name for p in sftp_server.archive.iterdir()) == [
        "employees.csv",
        "time_entries_2024-06.csv",
    ]
    assert sorted(p.name for p in dest.iterdir()) == ["employees.csv", "time_entries_2024-06.csv"]
    assert logins(sftp_server) == 1
    assert (
        src.describe()
        == f"sftp://{sftp_server.user}@127.0.0.1:{sftp_server.port}{sftp_server.inbox}"
    )


def test_growing_file_is_not_listed_until_stable(sftp_server: SftpServer):
    put(sftp_server, "employees.csv", b"employee_id\nE1\n")
    growing = put(sftp_server, "time_entries_big.csv", b"entry_id\n")
    stop = threading.Event()

    def writer() -> None:  # the PSA still appending rows
        with open(growing, "ab") as f:
            while not stop.is_set():
                f.write(b"1\n")
                f.flush()
                time.sleep(0.02)

    t = threading.Thread(target=writer)
    t.start()
    try:
        with sftp_server.source(stable_seconds=0.3) as src:
            assert [f.name for f in src.list_complete()] == ["employees.csv"]
    finally:
        stop.set()
        t.join()
    with sftp_server.source(stable_seconds=0.3) as src:
        assert [f.name for f in src.list_complete()] == ["employees.csv", "time_entries_big.csv"]


def test_done_marker_mode(sftp_server: SftpServer, tmp_path: Path):
    put(sftp_server, "time_entries_a.csv", b"entry_id\n1\n")
    put(sftp_server, "time_entries_a.csv.done", b"")
    put(sftp_server, "time_entries_b.csv", b"entry_id\n2\n")  # no marker yet
    archive = sftp_server.root / "landed" / "2024"  # created, parents included
    with sftp_server.source(done_markers=True, archive=str(archive)) as src:
        files = src.list_complete()
        assert [f.name for f in files] == ["time_entries_a.csv"]
        src.fetch(files[0], tmp_path)
        src.archive(files[0])
    assert sorted(p.name for p in archive.iterdir()) == [
        "time_entries_a.csv",
        "time_entries_a.csv.done",
    ]
    assert sorted(p.name for p in sftp_server.inbox.iterdir()) == ["time_entries_b.csv"]


def test_changed_host_key_is_fatal(sftp_server: SftpServer, caplog: pytest.LogCaptureFixture):
    sftp_server.restart_with_new_host_key()
    src = sftp_server.source()
    with pytest.raises(SourceError, match="does not match known_hosts") as err:
        src.list_complete()
    assert not isinstance(err.value, RetryableSourceError)
    assert f"[127.0.0.1]:{sftp_server.port}" in str(err.value)
    assert "SHA256:" in str(err.value)
    assert "retrying" not in caplog.text  # fatal: no retries


def test_unknown_host_is_fatal_and_says_how_to_fix(sftp_server: SftpServer, tmp_path: Path):
    other = tmp_path / "known_hosts_other"
    other.write_text(sftp_server.known_hosts_line().replace(str(sftp_server.port), "1", 1))
    with pytest.raises(SourceError, match="not in known_hosts") as err:
        sftp_server.source(known_hosts_path=other).list_complete()
    assert not isinstance(err.value, RetryableSourceError)
    assert "ssh-keyscan" in str(err.value) and str(other) in str(err.value)
    with pytest.raises(SourceError, match="does not exist"):
        sftp_server.source(known_hosts_path=tmp_path / "missing").list_complete()


def test_wrong_client_key_is_fatal(sftp_server: SftpServer):
    with pytest.raises(SourceError, match="was refused") as err:
        sftp_server.source(key_path=sftp_server.keys.stranger_key).list_complete()
    assert not isinstance(err.value, RetryableSourceError)


def test_missing_inbox_is_fatal(sftp_server: SftpServer):
    with pytest.raises(SourceError, match="no such file") as err:
        sftp_server.source(inbox=str(sftp_server.root / "nope")).list_complete()
    assert not isinstance(err.value, RetryableSourceError)


def test_server_down_retries_then_gives_up(
    sftp_server: SftpServer, caplog: pytest.LogCaptureFixture
):
    sftp_server.stop()
    src = sftp_server.source(retries=3, backoff=0.01, max_backoff=0.03)
    started = time.monotonic()
    with pytest.raises(RetryableSourceError, match="after 4 attempt") as err:
        src.list_complete()
    assert time.monotonic() - started < 2
    assert caplog.text.count("retrying in") == 3
    # Exponential backoff from `backoff`, capped at `max_backoff`; each attempt numbered.
    waits = [
        r.getMessage().rsplit("retrying in ", 1)[1]
        for r in caplog.records
        if "retrying in" in r.getMessage()
    ]
    assert waits == ["0.01s", "0.02s", "0.03s"]  # 0.04 capped
    assert "(attempt 3/4)" in caplog.text
    assert f"on [{sftp_server.host}]:{sftp_server.port} failed after 4 attempt(s)" in str(err.value)


def test_silent_server_times_out_and_is_retryable(sftp_server: SftpServer):
    # A listening socket that never speaks SSH: a hung or overloaded server.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        src = sftp_server.source(port=hung.getsockname()[1], connect_timeout=0.3, retries=1)
        started = time.monotonic()
        with pytest.raises(RetryableSourceError, match="protocol banner|No existing session"):
            src.list_complete()
    assert time.monotonic() - started < 3


def _kill_when_partial(
    server: SftpServer, tmp: Path, threshold: int, done: list[int], freeze: bool = False
) -> threading.Thread:
    """Watch the download's temp file; once it holds `threshold` bytes, kill (or freeze)
    the server side of the connection."""

    def watch() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if tmp.exists() and tmp.stat().st_size >= threshold:
                done.append(server.freeze_sessions() if freeze else server.kill_sessions())
                return
            time.sleep(0.002)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_connection_killed_mid_download_resumes(
    sftp_server: SftpServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="connectors")
    remote = sftp_server.inbox / "time_entries_big.csv"
    put_large(remote, 64 << 20)
    dest = tmp_path / "landing"
    killed: list[int] = []
    with sftp_server.source() as src:
        (f,) = src.list_complete()
        watcher = _kill_when_partial(sftp_server, dest / f".{f.name}.part", 8 << 20, killed)
        local = src.fetch(f, dest)
        watcher.join()
    assert killed and killed[0] > 0, "the session was never killed mid-transfer"
    assert "retrying in" in caplog.text and "resuming" in caplog.text
    assert logins(sftp_server) == 2
    assert same_bytes(local, remote)
    assert sorted(p.name for p in dest.iterdir()) == [f.name]


def test_server_frozen_mid_download_times_out_and_resumes(
    sftp_server: SftpServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    remote = sftp_server.inbox / "time_entries_big.csv"
    put_large(remote, 32 << 20)
    dest = tmp_path / "landing"
    frozen: list[int] = []
    with sftp_server.source(io_timeout=0.5) as src:
        (f,) = src.list_complete()
        watcher = _kill_when_partial(sftp_server, dest / f".{f.name}.part", 4 << 20, frozen, True)
        started = time.monotonic()
        local = src.fetch(f, dest)
        elapsed = time.monotonic() - started
        watcher.join()
    assert frozen and frozen[0] > 0, "the session was never frozen mid-transfer"
    assert "TimeoutError" in caplog.text and elapsed < 10
    assert same_bytes(local, remote)


def test_connection_killed_without_retries_leaves_nothing(sftp_server: SftpServer, tmp_path: Path):
    put_large(sftp_server.inbox / "time_entries_big.csv", 64 << 20)
    dest = tmp_path / "landing"
    killed: list[int] = []
    with sftp_server.source(retries=0) as src:
        (f,) = src.list_complete()
        watcher = _kill_when_partial(sftp_server, dest / f".{f.name}.part", 8 << 20, killed)
        with pytest.raises(RetryableSourceError):
            src.fetch(f, dest)
        watcher.join()
    assert killed
    assert list(dest.iterdir()) == []  # neither a final file nor a temp file


def test_file_changed_after_listing_is_not_fetched(sftp_server: SftpServer, tmp_path: Path):
    path = put(sftp_server, "employees.csv", b"employee_id\nE1\n")
    with sftp_server.source() as src:
        (f,) = src.list_complete()
        with open(path, "ab") as out:
            out.write(b"E2\n")
        with pytest.raises(RetryableSourceError, match="changed since it was listed"):
            src.fetch(f, tmp_path / "landing")
    assert list((tmp_path / "landing").iterdir()) == []


def test_remote_names_never_escape_dest_dir(sftp_server: SftpServer, tmp_path: Path):
    # A file the server *could* serve if "../" were joined into the remote path.
    (sftp_server.root / "time_entries_evil.csv").write_bytes(b"outside the inbox\n")
    put(sftp_server, "time_entries..%2f..%2fevil.csv", b"entry_id\n1\n")
    dest = tmp_path / "a" / "landing"
    with sftp_server.source() as src:
        for bad in ("../time_entries_evil.csv", "sub/../../time_entries_evil.csv", "..", "a\\b"):
            with pytest.raises(SourceError, match="refusing remote file name"):
                src.fetch(RemoteFile(bad, 18, 0.0), dest)
            with pytest.raises(SourceError, match="refusing remote file name"):
                src.archive(RemoteFile(bad, 18, 0.0))
        (listed,) = src.list_complete()
        local = src.fetch(listed, dest)
    assert local.parent == dest and local.name == "time_entries.._2f.._2fevil.csv"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["landing"]
    assert (sftp_server.root / "time_entries_evil.csv").exists()  # never archived either


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def test_large_file_streams_with_bounded_memory(sftp_server: SftpServer, tmp_path: Path):
    size = 200 << 20
    remote = sftp_server.inbox / "time_entries_huge.csv"
    put_large(remote, size)
    try:  # reset the peak-RSS counter (Linux >= 4.0), so the peak is this test's
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pytest.skip("cannot reset peak RSS (/proc/self/clear_refs) on this kernel")
    base_kib = _status_kib("VmRSS")
    with sftp_server.source() as src:
        (f,) = src.list_complete()
        started = time.monotonic()
        local = src.fetch(f, tmp_path / "landing")
        elapsed = time.monotonic() - started
    growth = (_status_kib("VmHWM") - base_kib) * 1024
    print(
        f"200 MiB in {elapsed:.2f}s ({size / elapsed / 1e6:.0f} MB/s), peak RSS +{growth >> 20} MiB"
    )
    assert growth < 48 << 20, f"peak RSS grew by {growth >> 20} MiB for a 200 MiB file"
    assert same_bytes(local, remote)


def test_passphrase_key_works_and_never_leaks(
    sftp_server: SftpServer, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)  # paramiko's debug log included
    keys = sftp_server.keys
    put(sftp_server, "employees.csv", b"employee_id\nE1\n")
    with sftp_server.source(key_path=keys.encrypted_key, key_passphrase=keys.passphrase) as src:
        assert [f.name for f in src.list_complete()] == ["employees.csv"]
        shown = f"{src!r} {src} {src.describe()}"

    texts = [shown]
    for kwargs, match in [
        (dict(key_passphrase=None), "is encrypted: set key_passphrase"),
        (dict(key_passphrase=keys.passphrase[:-1]), "wrong key_passphrase"),
    ]:
        src = sftp_server.source(key_path=keys.encrypted_key, **kwargs)
        with pytest.raises(SourceError, match=match) as err:
            src.list_complete()
        assert not isinstance(err.value, RetryableSourceError)
        texts.append("".join(traceback.format_exception(err.value)))
    # a connection failure after the key was decrypted (server gone)
    src = sftp_server.source(key_path=keys.encrypted_key, key_passphrase=keys.passphrase)
    sftp_server.stop()
    with pytest.raises(RetryableSourceError) as err:
        src.list_complete()
    texts.append("".join(traceback.format_exception(err.value)))

    key_lines = keys.encrypted_key.read_text().splitlines()[1:-1]
    everything = "\n".join(texts) + caplog.text
    assert keys.passphrase not in everything
    assert keys.passphrase[:-1] not in everything
    assert not any(line in everything for line in key_lines)
