"""The one Definitions object of the stagepost code location."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from assets.api_ingestion import api_assets
from assets.deals import deal_setup, deals_accounted_for, validated_crm_deals
from assets.feedback import status_feedback
from assets.full_export import full_export_checks
from assets.ingestion import landing_assets
from assets.posting import posting_window
from assets.reconciliation import reconciliation_assets
from assets.resource_plans import resource_plan_assets, resource_plan_checks
from assets.revenue import revenue_recognized, revenue_window
from assets.validation import validation_assets, validation_checks
from config.settings import current
from io_managers.staging_table import StagingTableIOManager
from pipelines.api_jobs import api_jobs, api_schedules
from pipelines.deal_jobs import deal_setup_job
from pipelines.desk_jobs import desk_digest_job, desk_schedules
from pipelines.feedback_jobs import feedback_jobs, feedback_sensors
from pipelines.jobs import (
    ingest_nightly_job,
    ingest_time_entries_job,
    main_job,
    revalidate_job,
)
from pipelines.operator_jobs import confirm_full_export_job, ignore_quarantined_job
from pipelines.ops_jobs import ops_schedules, retention_job, staging_backup_job
from pipelines.posting_jobs import posting_schedules, posting_window_job, revenue_window_job
from pipelines.reconciliation_jobs import (
    reconciliation_job,
    reconciliation_schedules,
    reconciliation_sensors,
)
from pipelines.schedules import schedules
from pipelines.sensors import psa_inbox_sensor
from resources.settings import (
    api_source_resources,
    erp_resource,
    outbound_delivery_resource,
    posting_policy_resource,
    psa_source_resource,
    report_upload_resource,
    staging_resource,
)

# Every STAGEPOST_* variable, validated at load: a bad value stops the code location here,
# naming the variable (the schedules and the sensor above read theirs from the same model).
settings = current()

defs = Definitions(
    assets=[
        *landing_assets,
        *api_assets,
        *validation_assets,
        posting_window,
        revenue_recognized,
        revenue_window,
        *reconciliation_assets,
        status_feedback,
        *resource_plan_assets,
        validated_crm_deals,
        deal_setup,
    ],
    asset_checks=[
        *validation_checks,
        *full_export_checks,
        *resource_plan_checks,
        deals_accounted_for,
    ],
    jobs=[
        main_job,
        revalidate_job,
        ingest_time_entries_job,
        ingest_nightly_job,
        ignore_quarantined_job,
        confirm_full_export_job,
        posting_window_job,
        revenue_window_job,
        reconciliation_job,
        staging_backup_job,
        retention_job,
        desk_digest_job,
        *feedback_jobs,
        deal_setup_job,
        *api_jobs,
    ],
    schedules=[
        *schedules,
        *api_schedules,
        *posting_schedules,
        *reconciliation_schedules,
        *ops_schedules,
        *desk_schedules,
    ],
    sensors=[psa_inbox_sensor, *reconciliation_sensors, *feedback_sensors],
    resources={
        "staging": staging_resource(settings),
        "psa_source": psa_source_resource(settings),
        "erp": erp_resource(settings),
        "posting_policy": posting_policy_resource(settings),
        "report_upload": report_upload_resource(settings),
        "outbound": outbound_delivery_resource(settings),
        "staging_table_io_manager": StagingTableIOManager(staging=staging_resource(settings)),
        **api_source_resources(settings),
    },
    # DuckDB allows one writer process: the steps of a run share this process.
    executor=in_process_executor,
)
