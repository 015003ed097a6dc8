"""The project's Definitions with every resource pointed at a test's own folders and
databases: jobs, assets and checks are the real ones, so an in-process run is a user's run."""

from __future__ import annotations

from pathlib import Path

from dagster import Definitions

import pipelines.definitions as real
from io_managers.staging_table import StagingTableIOManager
from resources.api_source import ApiSource
from resources.erp import ErpResource, PostingPolicy
from resources.feedback import OutboundDelivery
from resources.psa_source import PsaSource
from resources.reports import ReportUpload
from resources.settings import API_VENDORS
from resources.staging import StagingDatabase


def local_definitions(tmp_path: Path, inbox: Path, staging: str, erp: str) -> Definitions:
    """Staging and a SQL-interface ERP at the given URLs, the PSA inbox, previews and the
    status feedback under `tmp_path`; the vendor APIs unconfigured (not pulled)."""
    return Definitions(
        assets=real.defs.assets,
        asset_checks=real.defs.asset_checks,
        jobs=real.defs.jobs,
        resources={
            "staging": StagingDatabase(url=staging),
            "psa_source": PsaSource(inbox=str(inbox), stable_seconds=0),
            "erp": ErpResource(kind="sql", url=erp),
            "posting_policy": PostingPolicy(preview_dir=str(tmp_path / "previews")),
            "staging_table_io_manager": StagingTableIOManager(staging=StagingDatabase(url=staging)),
            "report_upload": ReportUpload(),
            "outbound": OutboundDelivery(folder=str(tmp_path / "feedback")),
            **{f"{v}_api": ApiSource(vendor=v) for v in API_VENDORS},
        },
        executor=real.defs.executor,
    )
