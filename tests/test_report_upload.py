"""Workbook upload to an SFTP folder, against a real OpenSSH sshd: whole files only, host keys
checked, transient failures retried, and the settings read from the environment."""

from __future__ import annotations

import os
from pathlib import Path

import paramiko
import pytest

from connectors.report_upload import RetryableUploadError, SftpReportUpload, UploadError
from resources.settings import report_upload_resource
from tests.support.sftp_server import SftpServer


def uploader(server: SftpServer, folder: str, **overrides) -> SftpReportUpload:
    kw = server.source_kwargs(**overrides)
    for source_only in ("inbox", "stable_seconds"):
        kw.pop(source_only)
    return SftpReportUpload(folder=folder, **kw)


def workbook(tmp_path: Path, name: str = "reconciliation_all_x.xlsx", size: int = 300_000) -> Path:
    path = tmp_path / "reports" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def test_upload_creates_the_folder_and_publishes_the_whole_file(
    sftp_server: SftpServer, tmp_path: Path
) -> None:
    local = workbook(tmp_path)
    with uploader(sftp_server, "controllers/reconciliation") as up:
        remote = up.upload(local)
    assert remote == f"controllers/reconciliation/{local.name}"
    folder = sftp_server.root / "controllers" / "reconciliation"  # relative to the SFTP root
    assert (folder / local.name).read_bytes() == local.read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == [local.name]  # no .part left


def test_a_rerun_replaces_the_file_of_the_same_name(
    sftp_server: SftpServer, tmp_path: Path
) -> None:
    folder = sftp_server.root / "out"
    local = workbook(tmp_path)
    with uploader(sftp_server, str(folder)) as up:  # an absolute folder works as well
        up.upload(local)
        local.write_bytes(b"second version")
        assert up.upload(local) == f"{folder}/{local.name}"
    assert (folder / local.name).read_bytes() == b"second version"


def test_unknown_host_key_is_refused_before_anything_is_written(
    sftp_server: SftpServer, tmp_path: Path
) -> None:
    other = tmp_path / "known_hosts_other"
    other.write_text(f"[{sftp_server.host}]:{sftp_server.port + 1} " + "ssh-ed25519 AAAA\n")
    with pytest.raises(UploadError, match="not in known_hosts") as err:
        uploader(sftp_server, "out", known_hosts_path=other).upload(workbook(tmp_path))
    assert not isinstance(err.value, RetryableUploadError)
    assert not (sftp_server.root / "out").exists()


def test_server_down_is_retryable_after_the_retries(
    sftp_server: SftpServer, tmp_path: Path
) -> None:
    sftp_server.stop()
    with pytest.raises(RetryableUploadError, match=r"failed after 3 attempt\(s\)"):
        uploader(sftp_server, "out").upload(workbook(tmp_path))


def test_a_connection_lost_mid_upload_starts_the_file_over(
    sftp_server: SftpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the first upload writes half of the file, then the link breaks (a
    real server cannot be made to drop at a chosen byte). The retry must publish the whole
    file, and the half-written part must never appear under the final name."""
    local = workbook(tmp_path, size=1_000_000)
    real_put = paramiko.SFTPClient.put
    seen: list[list[str]] = []

    def put_then_break(self, localpath, remotepath, callback=None, confirm=True):
        if not seen:
            with self.open(remotepath, "wb") as f:
                f.write(local.read_bytes()[:500_000])
            seen.append(sorted(p.name for p in (sftp_server.root / "out").iterdir()))
            raise EOFError("connection lost")
        return real_put(self, localpath, remotepath, callback=callback, confirm=confirm)

    monkeypatch.setattr(paramiko.SFTPClient, "put", put_then_break)
    with uploader(sftp_server, "out") as up:
        up.upload(local)
    assert seen == [[f".{local.name}.part"]]  # only the hidden part existed when it broke
    out = sftp_server.root / "out"
    assert sorted(p.name for p in out.iterdir()) == [local.name]
    assert (out / local.name).read_bytes() == local.read_bytes()


def test_settings_default_to_the_psa_sftp_server(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("STAGEPOST_SFTP_", "STAGEPOST_REPORTS_SFTP_")):
            monkeypatch.delenv(name)
    assert not report_upload_resource().enabled  # no folder: no upload
    monkeypatch.setenv("STAGEPOST_SFTP_HOST", "psa.example.com")
    monkeypatch.setenv("STAGEPOST_SFTP_USER", "psa")
    monkeypatch.setenv("STAGEPOST_SFTP_KEY", "/keys/psa")
    monkeypatch.setenv("STAGEPOST_SFTP_KNOWN_HOSTS", "/keys/known_hosts")
    monkeypatch.setenv("STAGEPOST_REPORTS_SFTP_FOLDER", "controllers")
    monkeypatch.setenv("STAGEPOST_REPORTS_SFTP_USER", "finance")
    monkeypatch.setenv("STAGEPOST_REPORTS_SFTP_PORT", "2222")
    r = report_upload_resource()
    assert (r.enabled, r.folder, r.host, r.port, r.username, r.key_path, r.known_hosts_path) == (
        True,
        "controllers",
        "psa.example.com",
        2222,
        "finance",
        "/keys/psa",
        "/keys/known_hosts",
    )


def test_missing_settings_are_named() -> None:
    from resources.reports import ReportUpload

    with pytest.raises(ValueError, match="needs host, username, key_path, known_hosts_path"):
        ReportUpload(folder="controllers").open()
