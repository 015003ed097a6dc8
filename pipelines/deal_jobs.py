"""The project set-up job: land CRM deals and project templates, validate, set up (finance or
operations launch it; nothing to decide at launch)."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from assets.deals import DATASETS, deal_setup, validated_crm_deals
from assets.ingestion import landed_asset_key
from pipelines.launchpad import ops_only

deal_setup_job = define_asset_job(
    "deal_setup_job",
    selection=AssetSelection.assets(
        *(landed_asset_key(d) for d in DATASETS), validated_crm_deals, deal_setup
    ),
    config=ops_only(),  # the ERP and the outbound folder are deployment settings
    description=(
        "Land CRM deals and project templates, validate them, and set up each won deal as "
        "customer, project and tasks in the ERP, with the PSA's project-import file."
    ),
)
