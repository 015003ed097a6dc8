"""Project set-up from won CRM deals: the deals' validation and the set-up itself (thin: the
work is `staging_models.validation` and `posting.deal_setup`)."""

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from assets.ingestion import landed_asset_key
from assets.metadata_tables import md_table
from assets.pools import ERP_POSTING, STAGING_WRITE
from assets.refusals import Refusal
from assets.validation import GROUP as VALIDATION
from assets.validation import validated_master_data
from posting.deal_setup import outbound_dir, run_deal_setup
from resources.erp import ErpResource
from resources.staging import StagingDatabase
from staging_models.validation import conservation, validate_all

#: The deal set-up's group (its job selects it by this name).
GROUP = "deals"
DATASETS = ("project_templates", "crm_deals")


@asset(
    group_name=VALIDATION,
    pool=STAGING_WRITE,
    kinds={"pandera", "sql"},
    deps=[AssetKey(landed_asset_key(d)) for d in DATASETS] + [validated_master_data],
    description=(
        "Project templates and CRM deals checked against their contracts (DEAL_*, TPL_*): "
        "a won deal that passes is set up; one that fails waits in the quarantine."
    ),
)
def validated_crm_deals(
    context: AssetExecutionContext, staging: StagingDatabase
) -> MaterializeResult:
    results = validate_all(staging.get_db(), actor=f"run {context.run.run_id}", datasets=DATASETS)
    md: dict = {}
    for name, r in results.items():
        md[f"{name}.rows_checked"] = r.checked
        md[f"{name}.rows_valid"] = r.valid
        md[f"{name}.rows_quarantined"] = r.quarantined
        md[f"{name}.rows_released"] = r.released
        md[f"{name}.rows_not_postable"] = r.not_postable  # deals: not (or no longer) won
        if r.by_rule:
            md[f"{name}.rows_by_rule"] = MetadataValue.json(r.by_rule)
    return MaterializeResult(metadata=md)


@asset_check(
    asset=validated_crm_deals,
    blocking=True,
    description=(
        "Every deal and template row read is landed and settled in exactly one state "
        "(valid, quarantined, superseded, not postable). Blocks the set-up if not."
    ),
)
def deals_accounted_for(staging: StagingDatabase) -> AssetCheckResult:
    df = conservation(staging.get_db(), DATASETS).drop(columns=["hours_total", "validated_rows"])
    bad = df[~df["ok"]]
    md = {"by_dataset": md_table(df)}
    if len(bad):
        md["failing"] = MetadataValue.json(bad["dataset"].tolist())
    return AssetCheckResult(passed=bad.empty, metadata=md)


@asset(
    group_name=GROUP,
    pool=ERP_POSTING,
    kinds={"sql"},
    deps=[validated_crm_deals],
    description=(
        "Won, valid deals become customer, project and template tasks in the ERP (exactly "
        "once, by external ID), and a PSA project-import file (canonical projects and "
        "project_tasks CSVs) in STAGEPOST_DEAL_OUTBOUND_DIR; later changes update dates, "
        "budget and manager. Status per deal in the staging table deal_setups."
    ),
)
def deal_setup(
    context: AssetExecutionContext, staging: StagingDatabase, erp: ErpResource
) -> MaterializeResult:
    target = erp.get_target()
    try:
        result = run_deal_setup(staging.get_db(), target, outbound_dir(), run_id=context.run.run_id)
    finally:
        close = getattr(target, "close", None)
        if close:
            close()
    md = {
        "deals_set_up": MetadataValue.json(result.set_up),
        "deals_updated": MetadataValue.json(result.updated),
        "deals_quarantined": MetadataValue.json(result.quarantined),
        "psa_files": MetadataValue.json([str(p) for p in result.psa_files]),
        "erp": erp.describe(),
    }
    if result.failed:
        md["deals_failed"] = MetadataValue.json(result.failed)
        raise Refusal(
            f"The ERP refused the set-up of {len(result.failed)} deal(s): "
            f"{next(iter(result.failed.values()))}. The next run sends them again.",
            md,
            kind="DealSetupFailed",
        )
    context.log.info(
        f"{len(result.set_up)} deal(s) set up, {len(result.updated)} updated, "
        f"{len(result.quarantined)} quarantined"
    )
    return MaterializeResult(metadata=md)
