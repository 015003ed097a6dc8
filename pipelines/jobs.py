"""Jobs: what the schedules, sensors and finance launch."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from assets.ingestion import GROUP as INGESTION
from assets.ingestion import HOURLY_DATASETS, NIGHTLY_DATASETS, landed_asset_key
from assets.validation import GROUP as VALIDATION
from assets.validation import validated_expenses, validated_time_entries
from pipelines.launchpad import ops_only

ingest_time_entries_job = define_asset_job(
    "ingest_time_entries_job",
    selection=AssetSelection.assets(*(landed_asset_key(d) for d in HOURLY_DATASETS))
    | AssetSelection.assets(validated_time_entries, validated_expenses),
    config=ops_only(),  # nothing to decide: the resources are not the Launchpad's
    description="Land and validate new approved-time and expense exports (hourly).",
)

ingest_nightly_job = define_asset_job(
    "ingest_nightly_job",
    selection=AssetSelection.assets(*(landed_asset_key(d) for d in NIGHTLY_DATASETS))
    | AssetSelection.groups(VALIDATION),
    config=ops_only(),
    description=(
        "Land employees, projects, tasks, rate cards and invoice proposals, then re-validate "
        "(quarantined rows whose master data was fixed are released) (nightly)."
    ),
)

revalidate_job = define_asset_job(
    "revalidate_job",
    selection=AssetSelection.groups(VALIDATION),
    config=ops_only(),
    description=(
        "Validate again everything waiting, landing nothing: quarantined rows whose master "
        "data was fixed are released (the finance desk's Re-validate now)."
    ),
)

main_job = define_asset_job(
    "main_job",
    selection=AssetSelection.groups(INGESTION, VALIDATION),
    config=ops_only(),
    description="Land everything the inbox holds, then validate it against the contracts.",
)
