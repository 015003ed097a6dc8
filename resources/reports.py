"""The workbook upload resource: an SFTP folder reconciliation workbooks are copied to."""

from __future__ import annotations

from pydantic import Field

from connectors.report_upload import SftpReportUpload
from resources.sftp import SftpLogin


class ReportUpload(SftpLogin):
    """Where reconciliation workbooks are also uploaded: an SFTP folder, or nowhere (default).

    The workbooks are always written to the reports folder first; the upload is a copy
    for controllers who collect them over SFTP.
    """

    folder: str = Field(default="", description="Remote folder; empty = no upload")
    retries: int = Field(default=3, description="Transient failures retried per workbook")

    @property
    def enabled(self) -> bool:
        return bool(self.folder)

    def open(self) -> SftpReportUpload:
        return SftpReportUpload(
            **self.login(("folder",), "workbook upload", "Workbooks over SFTP"),
            folder=self.folder,
            retries=self.retries,
        )
