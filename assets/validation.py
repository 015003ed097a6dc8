"""Validation assets: the contracts run after landing; checks prove nothing was lost."""

from decimal import Decimal

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

from assets.api_ingestion import MASTER_DATASETS, master_data_key, time_entries_key
from assets.ingestion import landed_asset_key
from assets.metadata_tables import md_table
from assets.pools import STAGING_WRITE
from resources.settings import API_VENDORS
from resources.staging import StagingDatabase
from staging_models.figures import decimal_text
from staging_models.validation import DatasetValidation, conservation, validate_all

#: The validation assets' group (jobs select it by this name).
GROUP = "validation"
MASTER = ("employees", "projects", "project_tasks", "rate_cards", "milestones", "fx_rates")
#: API pulls land before validation runs in the same job (a dependency orders the steps).
API_TIME_KEYS = [AssetKey(time_entries_key(v)) for v in API_VENDORS]
API_MASTER_KEYS = [AssetKey(master_data_key(v)) for v in MASTER_DATASETS]


#: What each validation figure counts (metadata keys are `<dataset>.<figure>`).
_FIGURES: dict[str, tuple[str, str]] = {
    "checked": ("rows_checked", "current row versions checked by this run"),
    "valid": ("rows_valid", "of those, rows that pass every rule"),
    "quarantined": (
        "rows_quarantined",
        "of those, rows that break at least one rule (newly or still quarantined)",
    ),
    "newly_quarantined": ("rows_newly_quarantined", "rows quarantined for the first time"),
    "released": ("rows_released", "quarantined rows that pass now and were released"),
    "not_postable": ("rows_not_postable", "rows set aside as not postable (not approved, deleted)"),
}
_LEGEND = "\n".join(
    [
        "| figure | counts |",
        "|---|---|",
        *(f"| {name} | {text} |" for name, text in _FIGURES.values()),
        "| rows_by_rule | rows breaking each rule (a row breaking two rules counts under both, "
        "so these add up to more than rows_quarantined) |",
    ]
)


def _metadata(results: dict[str, DatasetValidation]) -> dict:
    """Every figure named by what it counts: rows, never rule violations under a row's name."""
    md: dict = {}
    for name, r in results.items():
        for attr, (figure, _) in _FIGURES.items():
            md[f"{name}.{figure}"] = getattr(r, attr)
        if r.by_rule:
            md[f"{name}.rows_by_rule"] = MetadataValue.json(r.by_rule)
    md["what_the_figures_count"] = MetadataValue.md(_LEGEND)
    return md


def _actor(context: AssetExecutionContext) -> str:
    return f"run {context.run.run_id}"


@asset(
    group_name=GROUP,
    pool=STAGING_WRITE,
    kinds={"pandera", "sql"},
    deps=[AssetKey(landed_asset_key(d)) for d in MASTER] + API_MASTER_KEYS,
    description="Employees, projects, tasks and rate cards checked against their contracts.",
)
def validated_master_data(
    context: AssetExecutionContext, staging: StagingDatabase
) -> MaterializeResult:
    results = validate_all(staging.get_db(), actor=_actor(context), datasets=MASTER)
    return MaterializeResult(metadata=_metadata(results))


@asset(
    group_name=GROUP,
    pool=STAGING_WRITE,
    kinds={"pandera", "sql"},
    deps=[AssetKey(landed_asset_key("time_entries")), validated_master_data, *API_TIME_KEYS],
    description=(
        "Approved, current time entries that pass every rule, with resolved rate and amount "
        "(table validated_time_entries). Rows that fail are in the quarantine."
    ),
)
def validated_time_entries(
    context: AssetExecutionContext, staging: StagingDatabase
) -> MaterializeResult:
    # Master data a vendor mapping derived while these entries landed is still pending (the
    # hourly job does not run validated_master_data): validate it first, or every entry would
    # wait for the nightly run as TE_PROJECT_NOT_VALID. Only pending or quarantined rows are
    # checked, so this costs nothing when nothing was derived.
    results = validate_all(
        staging.get_db(), actor=_actor(context), datasets=(*MASTER, "time_entries")
    )
    return MaterializeResult(metadata=_metadata({"time_entries": results["time_entries"]}))


@asset(
    group_name=GROUP,
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


@asset(
    group_name=GROUP,
    pool=STAGING_WRITE,
    kinds={"pandera", "sql"},
    deps=[AssetKey(landed_asset_key("expenses")), validated_time_entries],
    description=(
        "Approved, current expenses that pass every rule, with the rebilled amount (table "
        "validated_expenses). Rows that fail are in the quarantine."
    ),
)
def validated_expenses(
    context: AssetExecutionContext, staging: StagingDatabase
) -> MaterializeResult:
    results = validate_all(staging.get_db(), actor=_actor(context), datasets=("expenses",))
    return MaterializeResult(metadata=_metadata(results))


#: Conservation columns renamed for the UI by what they count.
_CONSERVATION_NAMES = {
    "versions": "row_versions",
    "pending": "versions_pending",
    "valid": "versions_valid",
    "quarantined": "versions_quarantined",
    "superseded": "versions_superseded",
    "not_postable": "versions_not_postable",
    "quarantine_rows": "quarantine_records_open_or_ignored",
    "hours_total": "hours_all_versions",
}
_CONSERVATION_LEGEND = (
    "rows_read: rows in landed files; rows_landed: rows kept in the landing table; "
    "row_versions: versions of all keys (every current and older version); "
    "versions_*: row versions per state (versions_quarantined counts every quarantined "
    "version, open or ignored by an operator); validated_rows: rows in the validated table; "
    "quarantine_records_open_or_ignored: quarantine records of quarantined versions "
    "(equals versions_quarantined when staging adds up)."
)


def _conservation_result(staging: StagingDatabase, datasets: tuple[str, ...]) -> AssetCheckResult:
    df = conservation(staging.get_db(), datasets)
    bad = df[~df["ok"]]
    hours = df.loc[df["dataset"] == "time_entries", "hours_total"].iloc[0]
    md = {
        "by_dataset": md_table(df.rename(columns=_CONSERVATION_NAMES)),
        "what_the_columns_count": MetadataValue.md(_CONSERVATION_LEGEND),
        "time_entry_hours_all_versions": decimal_text(
            Decimal(str(hours))
        ),  # numpy int64 on empty staging
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
    asset=validated_expenses,
    blocking=True,
    description="Conservation after expense validation (blocks posting of expenses if broken).",
)
def expenses_accounted_for(staging: StagingDatabase) -> AssetCheckResult:
    return _conservation_result(staging, (*MASTER, "time_entries", "expenses"))


@asset_check(
    asset=validated_time_entries,
    description="Open quarantine by rule code; warns while rows wait for a fix.",
)
def open_quarantine_by_rule(
    context: AssetCheckExecutionContext, staging: StagingDatabase
) -> AssetCheckResult:
    df = staging.get_db().query_df(
        """SELECT dataset, rule_code, COUNT(*) AS n FROM (
               SELECT DISTINCT v.dataset, v.rule_code, v.row_key, v.version
               FROM quarantine_violations v JOIN quarantine q ON q.dataset = v.dataset
                 AND q.row_key = v.row_key AND q.version = v.version
               WHERE q.status = 'open') d
           GROUP BY dataset, rule_code ORDER BY dataset, n DESC, rule_code"""
    )
    by_rule = {f"{d}.{r}": int(n) for d, r, n in df.itertuples(index=False)}
    rows = staging.get_db().query_df(
        """SELECT dataset, COUNT(*) AS n FROM quarantine WHERE status = 'open'
           GROUP BY dataset ORDER BY dataset"""
    )
    by_dataset = {d: int(n) for d, n in rows.itertuples(index=False)}
    return AssetCheckResult(
        passed=not by_dataset,
        severity=AssetCheckSeverity.WARN,
        metadata={
            # Rows (row versions) waiting in the quarantine; each is counted once.
            "open_rows": sum(by_dataset.values()),
            "open_rows_by_dataset": MetadataValue.json(by_dataset),
            # Rows per rule: a row breaking two rules counts under both, so these add up to
            # the rule violations, not to the rows.
            "open_rows_by_rule": MetadataValue.json(by_rule),
            "open_rule_violations": sum(by_rule.values()),
        },
    )


validation_assets = [
    validated_master_data,
    validated_time_entries,
    validated_invoices,
    validated_expenses,
]
validation_checks = [
    every_row_accounted_for,
    invoices_accounted_for,
    expenses_accounted_for,
    open_quarantine_by_rule,
]
