"""Ingestion assets: one per PSA dataset, landing new files from the source into staging."""

from dagster import AssetExecutionContext, AssetsDefinition, Failure, MaterializeResult, asset

from connectors.sources.canonical import DATASETS
from pipelines.resources import PsaSource, StagingDatabase
from staging_models.landing import ingest_dataset

HOURLY_DATASETS = ("time_entries",)
NIGHTLY_DATASETS = ("employees", "projects", "project_tasks", "rate_cards", "invoices")


def landed_asset_key(dataset: str) -> str:
    return f"landed_{dataset}"


def _landing_asset(dataset: str) -> AssetsDefinition:
    @asset(
        name=landed_asset_key(dataset),
        group_name="ingestion",
        kinds={"duckdb", "csv"},
        description=(
            f"New `{dataset}` files from the PSA source, landed and versioned in staging "
            f"(tables land_{dataset}, stg_{dataset}; every file recorded in loads)."
        ),
    )
    def _land(
        context: AssetExecutionContext, staging: StagingDatabase, psa_source: PsaSource
    ) -> MaterializeResult:
        db = staging.get_db()
        source = psa_source.open()
        try:
            report = ingest_dataset(
                db,
                source,
                dataset,
                fmt=psa_source.file_format(),
                workdir=psa_source.workdir(),
                log=context.log,
            )
        finally:
            close = getattr(source, "close", None)
            if close:
                close()
        totals = report.totals()
        metadata = {
            **totals,
            "source": source.describe(),
            "staging": staging.describe(),
            "files": [r.file_name for r in report.results],
        }
        if report.failures:
            raise Failure(
                description="; ".join(f.message or f.file_name for f in report.failures),
                metadata=metadata,
            )
        return MaterializeResult(metadata=metadata)

    return _land


landing_assets: list[AssetsDefinition] = [_landing_asset(d) for d in DATASETS]
