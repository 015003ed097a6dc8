"""The one Definitions object of the stagepost code location."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from assets.ingestion import landing_assets
from assets.validation import validation_assets, validation_checks
from pipelines.jobs import ingest_nightly_job, ingest_time_entries_job, main_job
from pipelines.operations import ignore_quarantined_job
from pipelines.schedules import schedules
from pipelines.sensors import psa_inbox_sensor
from pipelines.settings import psa_source_resource, staging_resource

defs = Definitions(
    assets=[*landing_assets, *validation_assets],
    asset_checks=[*validation_checks],
    jobs=[main_job, ingest_time_entries_job, ingest_nightly_job, ignore_quarantined_job],
    schedules=schedules,
    sensors=[psa_inbox_sensor],
    resources={"staging": staging_resource(), "psa_source": psa_source_resource()},
    # DuckDB allows one writer process: the steps of a run share this process.
    executor=in_process_executor,
)
