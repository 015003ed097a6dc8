"""API ingestion assets: per vendor, time entries pulled by cursor (hourly) or in full over the
recent range (nightly, run config `full: true`), and master data (Harvest, nightly).

Each asset calls `staging_models.api_pull.pull` with its vendor's resource (`<vendor>_api`);
the pulled window lands through the same path as an export file, so validation
(`validated_time_entries`, the nightly validation group) takes it like any other load. A
vendor whose settings are unset fails naming them; a 401/403 fails naming the token's
variable; a vendor that is down fails retryably (the cursor has not moved).
"""

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from assets.pools import STAGING_WRITE
from connectors.sources.api.errors import ApiAuthError
from connectors.sources.base import SourceError
from resources.api_source import ApiSource
from resources.settings import API_VENDORS
from resources.staging import StagingDatabase
from staging_models.api_pull import PullResult, pull
from staging_models.landing import LandingError

#: The API assets' group (kept apart from file ingestion: `main_job` lands the inbox only).
GROUP = "api_ingestion"
#: Vendors whose API reports no deletions: their nightly run is a full pull. Toggl's does in
#: workspace mode (Reports API, `STAGEPOST_TOGGL_WORKSPACE_ID`); with `/me`, which reports
#: deletions, its nightly run is an incremental pull (`_run`).
FULL_PULL_VENDORS = ("harvest", "toggl", "clockify", "kimai")
#: Master datasets pulled from a vendor's API (Harvest; the others' APIs are not pulled yet).
MASTER_DATASETS = {"harvest": ("employees", "projects", "project_tasks", "invoices")}


class ApiPullConfig(Config):
    full: bool = Field(
        default=False,
        description="Pull every entry dated in the last STAGEPOST_API_FULL_PULL_DAYS days as a "
        "full export (entries it lacks become tombstones) instead of the changes since the "
        "cursor",
    )


def time_entries_key(vendor: str) -> str:
    return f"api_{vendor}_time_entries"


def master_data_key(vendor: str) -> str:
    return f"api_{vendor}_master_data"


def _metadata(results: list[PullResult], source: ApiSource) -> dict:
    md: dict = {"source": source.describe()}
    for r in results:
        p = r.dataset
        md[f"{p}.records"] = r.records
        md[f"{p}.requests"] = r.requests
        md[f"{p}.window"] = f"{r.window_from or '(everything)'} .. {r.window_to}"
        md[f"{p}.cursor"] = r.cursor_after or ""
        if r.load:
            md[f"{p}.load"] = MetadataValue.json(
                {
                    k: r.load[k]
                    for k in (
                        "load_id",
                        "status",
                        "rows_read",
                        "rows_new_version",
                        "rows_unchanged",
                        "rows_stale",
                        "file_name",
                    )
                }
            )
            if "full_export" in r.load.get("extra", {}):
                md[f"{p}.full_export"] = MetadataValue.json(r.load["extra"]["full_export"])
    return md


def _run(
    context: AssetExecutionContext,
    staging: StagingDatabase,
    source: ApiSource,
    datasets: tuple[str, ...],
    full: bool = False,
) -> MaterializeResult:
    results: list[PullResult] = []
    try:
        vendor = source.open()
    except ApiAuthError as e:
        raise Failure(description=str(e), allow_retries=False) from None
    if full and vendor.reports_deletions:  # Toggl's `/me`: deletions come with the changes
        context.log.info(f"{source.vendor} reports deletions: no full pull needed, changes only")
        full = False
    db = staging.get_db()
    try:
        for ds in datasets:
            r = pull(
                db,
                vendor,
                ds,
                source_name=source.vendor,
                folder=source.folder(),
                settings=source.pull_settings(),
                full=full,
            )
            results.append(r)
            context.log.info(
                f"{source.vendor} {ds} ({r.mode}): {r.records} records in {r.requests} requests"
                + (f", load {r.load.get('load_id')} {r.load.get('status')}" if r.load else "")
            )
    except ApiAuthError as e:  # fatal: a wrong token is never an empty success
        raise Failure(
            description=str(e), metadata=_metadata(results, source), allow_retries=False
        ) from None
    except (SourceError, LandingError) as e:
        raise Failure(description=str(e), metadata=_metadata(results, source)) from None
    finally:
        vendor.close()
    return MaterializeResult(metadata=_metadata(results, source))


def _time_entries_asset(vendor: str) -> AssetsDefinition:
    resource_key = f"{vendor}_api"

    @asset(
        name=time_entries_key(vendor),
        group_name=GROUP,
        pool=STAGING_WRITE,
        kinds={"api", "parquet"},
        required_resource_keys={"staging", resource_key},
        description=(
            f"Time entries pulled from the {vendor} API: changes since the cursor less the "
            "look-back, landed as one Parquet window (table api_cursors keeps the cursor)"
            + (
                "; with config full: every entry of the recent range, a full export"
                if vendor in FULL_PULL_VENDORS
                else ""
            )
            + (
                " (Toggl: in workspace mode, the Reports API; with /me, deleted entries "
                "become tombstone versions and no full pull is needed)"
                if vendor == "toggl"
                else ""
            )
            + "."
        ),
    )
    def _pull(context: AssetExecutionContext, config: ApiPullConfig) -> MaterializeResult:
        source: ApiSource = getattr(context.resources, resource_key)
        return _run(
            context,
            context.resources.staging,
            source,
            ("time_entries",),
            full=config.full and vendor in FULL_PULL_VENDORS,
        )

    return _pull


def _master_asset(vendor: str) -> AssetsDefinition:
    resource_key = f"{vendor}_api"
    datasets = MASTER_DATASETS[vendor]

    @asset(
        name=master_data_key(vendor),
        group_name=GROUP,
        pool=STAGING_WRITE,
        kinds={"api", "parquet"},
        required_resource_keys={"staging", resource_key},
        description=f"{', '.join(datasets)} pulled whole from the {vendor} API (nightly).",
    )
    def _pull(context: AssetExecutionContext) -> MaterializeResult:
        source: ApiSource = getattr(context.resources, resource_key)
        return _run(context, context.resources.staging, source, datasets)

    return _pull


api_assets: list[AssetsDefinition] = [_time_entries_asset(v) for v in API_VENDORS] + [
    _master_asset(v) for v in MASTER_DATASETS
]
