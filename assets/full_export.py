"""The check that a full export did not look truncated (see `staging_models.full_export`)."""

from dagster import AssetCheckResult, AssetCheckSeverity, AssetKey, MetadataValue, asset_check

from assets.ingestion import landed_asset_key
from resources.staging import StagingDatabase
from staging_models.full_export import held


@asset_check(
    asset=AssetKey(landed_asset_key("time_entries")),
    description=(
        "No full export waits for an operator: one that would tombstone more than "
        "STAGEPOST_FULL_EXPORT_MAX_DELETE_SHARE of its range tombstones nothing until "
        "confirm_full_export_job applies (or dismisses) it. Warns, names the file and the count."
    ),
)
def full_exports_not_held(staging: StagingDatabase) -> AssetCheckResult:
    df = held(staging.get_db())
    lines = [
        f"{r.file_name} (load {r.load_id}): {r.vanished_entries} of {r.scope_entries} entries "
        f"dated {r.date_from} to {r.date_to} missing, more than the allowed share "
        f"{r.max_share}; nothing tombstoned until confirm_full_export_job decides"
        for r in df.itertuples(index=False)
    ]
    return AssetCheckResult(
        passed=df.empty,
        severity=AssetCheckSeverity.WARN,
        description="; ".join(lines) or "no full export is held",
        metadata={
            "held_exports": MetadataValue.json(
                [
                    {
                        "file_name": r.file_name,
                        "load_id": r.load_id,
                        "vanished_entries": int(r.vanished_entries),
                        "scope_entries": int(r.scope_entries),
                        "max_share": r.max_share,
                    }
                    for r in df.itertuples(index=False)
                ]
            ),
            "held_total": len(df),
        },
    )


full_export_checks = [full_exports_not_held]
