"""Ingestion assets: one per PSA dataset, landing new files from the source into staging.

A run launched by the inbox sensor carries the tag `stagepost/file`: the asset of that file's
dataset lands that one file (if it is still in the inbox); the job's other landing assets land
nothing, and the job's downstream assets run as usual. An untagged run
(schedules, the Launchpad) lands every complete file: the schedules are the safety net
for anything a sensor tick missed.
"""

from dagster import AssetExecutionContext, AssetsDefinition, Failure, MaterializeResult, asset

from assets.pools import STAGING_WRITE
from connectors.sources.base import dataset_of
from connectors.sources.canonical import DATASETS
from pipelines.resources import PsaSource, StagingDatabase
from staging_models.landing import ingest_dataset

#: Run tags set by pipelines.sensors; values are the file's name and dataset.
FILE_TAG = "stagepost/file"
DATASET_TAG = "stagepost/dataset"

HOURLY_DATASETS = ("time_entries",)
NIGHTLY_DATASETS = ("employees", "projects", "project_tasks", "rate_cards", "invoices")


def landed_asset_key(dataset: str) -> str:
    return f"landed_{dataset}"


def _landing_asset(dataset: str) -> AssetsDefinition:
    @asset(
        name=landed_asset_key(dataset),
        group_name="ingestion",
        pool=STAGING_WRITE,
        kinds={"duckdb", "csv"},
        description=(
            f"New `{dataset}` files from the PSA source, landed and versioned in staging "
            f"(tables land_{dataset}, stg_{dataset}; every file recorded in loads)."
        ),
    )
    def _land(
        context: AssetExecutionContext, staging: StagingDatabase, psa_source: PsaSource
    ) -> MaterializeResult:
        only = context.run.tags.get(FILE_TAG)
        if only is not None and dataset_of(only) != dataset:
            # A sensor run for another dataset's file: this asset runs as part of the job
            # (so downstream assets run too) but has nothing to land.
            context.log.info(f"run is for {only}, not a {dataset} file: nothing to land")
            return MaterializeResult(
                metadata={"files_landed": 0, "files": [], "requested_file": only}
            )
        fmt = psa_source.file_format()  # a bad mapping file fails here, before any file
        full_export = psa_source.full_export_policy()  # so does a bad full-export setting
        db = staging.get_db()
        with psa_source.open() as source:
            report = ingest_dataset(
                db,
                source,
                dataset,
                fmt=fmt,
                workdir=psa_source.workdir(),
                log=context.log,
                only=only,
                full_export=full_export,
            )
        totals = report.totals()
        metadata = {
            **totals,
            "source": source.describe(),
            "staging": staging.describe(),
            "files": [r.file_name for r in report.results],
        }
        if only is not None:
            metadata["requested_file"] = only
        if report.failures:
            raise Failure(
                description="; ".join(f.message or f.file_name for f in report.failures),
                metadata=metadata,
            )
        return MaterializeResult(metadata=metadata)

    return _land


landing_assets: list[AssetsDefinition] = [_landing_asset(d) for d in DATASETS]
