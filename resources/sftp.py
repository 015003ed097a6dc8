"""How to log in to an SFTP server: shared by the PSA source and the workbook upload."""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource
from pydantic import Field


class SftpLogin(ConfigurableResource):
    """An SFTP server and how to log in (the PSA source's and the workbook upload's)."""

    host: str = ""
    port: int = 22
    username: str = ""
    key_path: str = ""
    key_passphrase: str | None = Field(default=None, description="Set via EnvVar")
    known_hosts_path: str = ""

    def login(self, required: tuple[str, ...], what: str, section: str) -> dict[str, Any]:
        """Connection keywords; settings that must be set (with `required`) and are not are
        named, with the README section that explains them."""
        names = ("host", "username", "key_path", "known_hosts_path", *required)
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            raise ValueError(f"{what} needs {', '.join(missing)} (see README, '{section}')")
        return {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "key_path": self.key_path,
            "key_passphrase": self.key_passphrase,
            "known_hosts_path": self.known_hosts_path,
        }
