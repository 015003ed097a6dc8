"""The reconciliation job, its nightly schedule and the after-posting sensor load and fire."""

from __future__ import annotations

from dagster import (
    AssetMaterialization,
    DagsterInstance,
    Definitions,
    RunRequest,
    SkipReason,
    build_sensor_context,
)

from assets.ingestion import landing_assets
from assets.posting import posting_window
from assets.reconciliation import reconciliation_assets
from assets.validation import validation_assets, validation_checks
from io_managers.staging_table import StagingTableIOManager
from pipelines.reconciliation_jobs import (
    reconcile_after_posting,
    reconciliation_job,
    reconciliation_nightly,
    reconciliation_schedules,
    reconciliation_sensors,
)
from resources.feedback import OutboundDelivery
from resources.settings import psa_source_resource, report_upload_resource, staging_resource


class NoErp:
    """The ERP resource is only used when a run executes; loading needs none."""

    def get_target(self):
        raise AssertionError("not called while loading definitions")


def test_definitions_with_reconciliation_load() -> None:
    defs = Definitions(
        assets=[*landing_assets, *validation_assets, *reconciliation_assets],
        asset_checks=[*validation_checks],
        jobs=[reconciliation_job],
        schedules=reconciliation_schedules,
        sensors=reconciliation_sensors,
        resources={
            "staging": staging_resource(),
            "psa_source": psa_source_resource(),
            "erp": NoErp(),
            "staging_table_io_manager": StagingTableIOManager(staging=staging_resource()),
            "report_upload": report_upload_resource(),
            "outbound": OutboundDelivery(),
        },
    )
    Definitions.validate_loadable(defs)
    job = defs.resolve_job_def(reconciliation_job.name)
    keys = {k.to_user_string() for k in job.asset_layer.asset_graph.get_all_asset_keys()}
    assert {
        "rec_lines",
        "rec_totals",
        "rec_invoices",
        "rec_kpis",
        "reconciliation_workbook",
    } <= keys
    assert reconciliation_nightly.cron_schedule == "30 3 * * *"


def test_sensor_requests_one_run_per_posting_window() -> None:
    with DagsterInstance.ephemeral() as instance:
        idle = list(reconcile_after_posting(build_sensor_context(instance=instance)))
        assert [type(r) for r in idle] == [SkipReason]
        # The key the posting asset really materializes (its definition), not the sensor's copy.
        instance.report_runless_asset_event(AssetMaterialization(posting_window.key))
        requests = list(reconcile_after_posting(build_sensor_context(instance=instance)))
        assert [type(r) for r in requests] == [RunRequest]
        assert requests[0].run_key.startswith("after-posting-")
