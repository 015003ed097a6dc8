"""Jobs: what the schedules, sensors and finance launch."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from assets.ingestion import HOURLY_DATASETS, NIGHTLY_DATASETS, landed_asset_key

ingest_time_entries_job = define_asset_job(
    "ingest_time_entries_job",
    selection=AssetSelection.assets(*(landed_asset_key(d) for d in HOURLY_DATASETS)),
    description="Land new approved-time exports (hourly).",
)

ingest_nightly_job = define_asset_job(
    "ingest_nightly_job",
    selection=AssetSelection.assets(*(landed_asset_key(d) for d in NIGHTLY_DATASETS)),
    description="Land employees, projects, tasks, rate cards and invoice proposals (nightly).",
)

main_job = define_asset_job(
    "main_job",
    selection=AssetSelection.groups("ingestion"),
    description="The whole pipeline on whatever the inbox holds: land everything.",
)
