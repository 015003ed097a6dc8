"""Where status feedback (and any other outbound feed) is delivered: a local folder or an SFTP
folder, and optionally a webhook (docs/status_feedback.md)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from connectors.outbound.folders import LocalFolder, SftpFolder
from connectors.outbound.webhook import Webhook
from resources.sftp import SftpLogin
from staging_models.db import data_dir
from staging_models.outbound import Targets


class OutboundDelivery(SftpLogin):
    """The delivery targets: the local folder unless an SFTP folder is set; a webhook if a
    URL is set (resolved from its environment variable: it may carry a token)."""

    folder: str = Field(default="", description="Local folder; empty = <data>/feedback")
    sftp_folder: str = Field(default="", description="Remote folder; empty = the local folder")
    webhook_url: str | None = Field(default=None, description="Set via EnvVar")
    webhook_attempts: int = Field(default=5, description="Attempts per push")

    def local_folder(self) -> Path:
        return Path(self.folder) if self.folder else data_dir() / "feedback"

    def targets(self) -> Targets:
        """Open the targets (an SFTP folder connects on its first file)."""
        if self.sftp_folder:
            folder = SftpFolder(
                **self.login(("sftp_folder",), "status feedback over SFTP", "Status feedback"),
                folder=self.sftp_folder,
            )
        else:
            folder = LocalFolder(self.local_folder())
        webhook = (
            Webhook(self.webhook_url, attempts=self.webhook_attempts) if self.webhook_url else None
        )
        return Targets(folder=folder, webhook=webhook)

    def webhook(self) -> Webhook | None:
        if not self.webhook_url:
            return None
        return Webhook(self.webhook_url, attempts=self.webhook_attempts)
