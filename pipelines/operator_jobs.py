"""Operator jobs launched from the Launchpad: decisions about quarantined rows and held
full exports (the ops are in `assets/operations.py`)."""

from dagster import job

from assets.operations import (
    ConfirmFullExportConfig,
    IgnoreQuarantinedConfig,
    decide_full_export,
    ignore_quarantined_rows,
)
from pipelines.launchpad import ops_only


@job(
    description="Mark quarantined rows as ignored, with a reason (finance operations).",
    config=ops_only({"ignore_quarantined_rows": IgnoreQuarantinedConfig}),
)
def ignore_quarantined_job() -> None:
    ignore_quarantined_rows()


@job(
    description=(
        "Apply (or dismiss) the tombstones of a full export held because it lacked more "
        "entries than allowed; who, when and why are audited (finance operations)."
    ),
    config=ops_only({"decide_full_export": ConfirmFullExportConfig}),
)
def confirm_full_export_job() -> None:
    decide_full_export()
