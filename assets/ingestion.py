"""Ingestion assets: one per PSA dataset, landing new files from the source into staging.

A run launched by the inbox sensor carries the tag `stagepost/file`: the asset of that file's
dataset lands that one file (if it is still in the inbox); the job's other landing assets land
nothing, and the job's downstream assets run as usual. An untagged run
(schedules, the Launchpad) lands every complete file: the schedules are the safety net
for anything a sensor tick missed.

A refused file (its name, format or columns) never stalls the run: it is set aside into the
rejected folder, the other files land and validation runs; the asset's warning check
`refused_files` stays red while a refused file is unresolved (no file of that name landed
since, and it is still in the rejected folder or the inbox).
"""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.pools import STAGING_WRITE
from connectors.sources.base import FileSource, SourceError, display_name
from connectors.sources.canonical import DATASETS
from resources.psa_source import PsaSource
from resources.staging import StagingDatabase
from staging_models.db import StagingDB
from staging_models.landing import ingest_dataset, unresolved_refusals

#: The landing assets' group (jobs select it by this name).
GROUP = "ingestion"
#: Run tags set by pipelines.sensors; values are the file's name and dataset.
FILE_TAG = "stagepost/file"
DATASET_TAG = "stagepost/dataset"

HOURLY_DATASETS = ("time_entries", "expenses")
NIGHTLY_DATASETS = (
    "employees",
    "projects",
    "project_tasks",
    "rate_cards",
    "invoices",
    "milestones",
    "assignments",
    "fx_rates",
)


def landed_asset_key(dataset: str) -> str:
    return f"landed_{dataset}"


REFUSED_CHECK = "refused_files"


def refused_check(db: StagingDB, source: FileSource, dataset: str) -> AssetCheckResult:
    """Red (a warning) while a refused file of `dataset` is unresolved: no file of the same
    name landed since, and it is still in the rejected folder or the inbox (deleting it there
    is how an operator gives it up)."""
    open_ = unresolved_refusals(db, (dataset,))
    note = None
    try:
        present = {display_name(n) for n in source.rejected_names()}
        present |= {display_name(n) for n in source.inbox_names()}
        open_ = open_[open_["file_name"].isin(present)]
    except (SourceError, OSError) as e:  # cannot look: every refusal counts as open
        note = f"could not list {source.describe()}: {e}"
    files = {str(r.file_name): str(r.message) for r in open_.itertuples(index=False)}
    md: dict = {"unresolved": len(files), "files": MetadataValue.json(files)}
    if note:
        md["note"] = note
    return AssetCheckResult(
        check_name=REFUSED_CHECK,
        passed=not files,
        severity=AssetCheckSeverity.WARN,
        metadata=md,
        description=("refused files waiting for a fix: " + ", ".join(files) if files else None),
    )


def _landing_asset(dataset: str) -> AssetsDefinition:
    @asset(
        name=landed_asset_key(dataset),
        group_name=GROUP,
        pool=STAGING_WRITE,
        kinds={"duckdb", "csv"},
        description=(
            f"New `{dataset}` files from the PSA source, landed and versioned in staging "
            f"(tables land_{dataset}, stg_{dataset}; every file recorded in loads). Refused "
            "files are set aside in the rejected folder."
        ),
        check_specs=[
            AssetCheckSpec(
                REFUSED_CHECK,
                asset=landed_asset_key(dataset),
                description=(
                    f"Warns while a refused `{dataset}` file is unresolved (fix and re-drop "
                    "it, or delete it from the rejected folder)."
                ),
            )
        ],
    )
    def _land(
        context: AssetExecutionContext, staging: StagingDatabase, psa_source: PsaSource
    ) -> MaterializeResult:
        only = context.run.tags.get(FILE_TAG)
        if only is not None and psa_source.file_format().dataset_of(only) != dataset:
            # A sensor run for another dataset's file: this asset runs as part of the job
            # (so downstream assets run too) but has nothing to land.
            context.log.info(f"run is for {only}, not a {dataset} file: nothing to land")
            db = staging.get_db()
            with psa_source.open() as source:
                check = refused_check(db, source, dataset)
            return MaterializeResult(
                metadata={"files_landed": 0, "files": [], "requested_file": only},
                check_results=[check],
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
            check = refused_check(db, source, dataset)
        totals = report.totals()
        metadata = {
            **totals,
            "source": source.describe(),
            "staging": staging.describe(),
            "files": [r.file_name for r in report.results],
        }
        if report.refused:
            metadata["refused"] = MetadataValue.json(
                {r.file_name: r.message for r in report.refused}
            )
        if report.waiting:
            metadata["waiting"] = report.waiting  # not complete yet: a later run takes them
        if report.skipped:
            metadata["skipped"] = MetadataValue.json(report.skipped)
        if report.restored:
            metadata["restored_from_archive"] = report.restored
        if report.unpacked:
            metadata["unpacked"] = MetadataValue.json(report.unpacked)
        if report.scratch_removed:
            metadata["scratch_removed"] = report.scratch_removed
        if only is not None:
            metadata["requested_file"] = only
        if report.failures:
            # Failures retrying can fix (a download, the staging database); refused files
            # do not fail the run.
            raise Failure(
                description="; ".join(f.message or f.file_name for f in report.failures),
                metadata=metadata,
            )
        return MaterializeResult(metadata=metadata, check_results=[check])

    return _land


landing_assets: list[AssetsDefinition] = [_landing_asset(d) for d in DATASETS]
