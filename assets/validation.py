"""Validation assets: the contracts run after landing; checks prove nothing was lost."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from assets.ingestion import landed_asset_key
from assets.pools import STAGING_WRITE
from pipelines.resources import StagingDatabase
from staging_models.validation import DatasetValidation, conservation, validate_all

MASTER = ("employees", "projects", "project_tasks", "rate_cards")


def _metadata(results: dict[str, DatasetValidation]) -> dict:
    md: dict = {}
    for name, r in results.items():
        for k in (
            "checked",
            "valid",
            "quarantined",
            "released",
            "newly_quarantined",
            "not_postable",
        ):
            md[f"{name}.{k}"] = getattr(r, k)
        if r.by_rule:
            md[f"{name}.violations_by_rule"] = MetadataValue.json(r.by_rule)
    return md


def _actor(context: AssetExecutionContext) -> str:
    return f"run {context.run.run_id}"


@asset(
    group_name="validation",
    pool=STAGING_WRITE,
    kinds={"pandera", "sql"},
    deps=[AssetKey(landed_asset_key(d)) for d in MASTER],
    description="Employees, projects, tasks and rate cards checked against their contracts.",
)
def validated_master_data(
    context: AssetExecutionContext, staging: StagingDatabase
) -> MaterializeResult:
    results = validate_all(staging.get_db(), actor=_actor(context), datasets=MASTER)
    return MaterializeResult(metadata=_metadata(results))


@asset(
    group_name="validation",
    pool=STAGING_WRITE,
    kinds={"pandera", "sql"},
    deps=[AssetKey(landed_asset_key("time_entries")), validated_master_data],
    description=(
        "Approved, current time entries that pass every rule, with resolved rate and amount "
        "(table validated_time_entries). Rows that fail are in the quarantine."
    ),
)
def validated_time_entries(
    context: AssetExecutionContext, staging: StagingDatabase
) -> MaterializeResult:
    results = validate_all(staging.get_db(), actor=_actor(context), datasets=("time_entries",))
    return MaterializeResult(metadata=_metadata(results))


@asset(
    group_name="validation",
    pool=STAGING_WRITE,
    kinds={"pandera", "sql"},
    deps=[AssetKey(landed_asset_key("invoices")), validated_time_entries],
    description="Invoice proposal lines that pass every rule (table validated_invoice_lines).",
)
def validated_invoices(
    context: AssetExecutionContext, staging: StagingDatabase
) -> MaterializeResult:
    results = validate_all(staging.get_db(), actor=_actor(context), datasets=("invoices",))
    return MaterializeResult(metadata=_metadata(results))


def _conservation_result(staging: StagingDatabase, datasets: tuple[str, ...]) -> AssetCheckResult:
    df = conservation(staging.get_db(), datasets)
    bad = df[~df["ok"]]
    md = {
        "by_dataset": MetadataValue.md(df.drop(columns=["hours_total"]).to_markdown(index=False)),
        "time_entry_hours": float(df.loc[df["dataset"] == "time_entries", "hours_total"].iloc[0]),
    }
    if len(bad):
        md["failing"] = MetadataValue.json(bad["dataset"].tolist())
    return AssetCheckResult(passed=bad.empty, metadata=md)


@asset_check(
    asset=validated_time_entries,
    blocking=True,
    description=(
        "Every row read is landed; every landed version is exactly one of valid, quarantined, "
        "superseded or not postable; validated and quarantine tables agree. Blocks posting if not."
    ),
)
def every_row_accounted_for(staging: StagingDatabase) -> AssetCheckResult:
    return _conservation_result(staging, (*MASTER, "time_entries"))


@asset_check(
    asset=validated_invoices,
    blocking=True,
    description="Conservation after invoice validation (blocks posting of invoices if broken).",
)
def invoices_accounted_for(staging: StagingDatabase) -> AssetCheckResult:
    return _conservation_result(staging, (*MASTER, "time_entries", "invoices"))


@asset_check(
    asset=validated_time_entries,
    description="Open quarantine by rule code; warns while rows wait for a fix.",
)
def open_quarantine_by_rule(
    context: AssetCheckExecutionContext, staging: StagingDatabase
) -> AssetCheckResult:
    df = staging.get_db().query_df(
        """SELECT v.dataset, v.rule_code, COUNT(*) AS n
           FROM quarantine_violations v JOIN quarantine q ON q.dataset = v.dataset
             AND q.row_key = v.row_key AND q.version = v.version
           WHERE q.status = 'open' GROUP BY v.dataset, v.rule_code ORDER BY v.dataset, n DESC"""
    )
    counts = {f"{d}.{r}": int(n) for d, r, n in df.itertuples(index=False)}
    return AssetCheckResult(
        passed=not counts,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "open_rows_by_rule": MetadataValue.json(counts),
            "open_total": sum(counts.values()),
        },
    )


validation_assets = [validated_master_data, validated_time_entries, validated_invoices]
validation_checks = [every_row_accounted_for, invoices_accounted_for, open_quarantine_by_rule]
