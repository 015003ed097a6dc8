"""Every staging table, imported in one place so `metadata` is complete before DDL runs."""

from staging_models import (  # noqa: F401  (registers tables)
    api_cursor_tables,  # noqa: F401  (API pull cursors)
    contract_tables,
    deal_tables,  # noqa: F401  (project set-up from CRM deals)
    desk_tables,  # noqa: F401  (the finance desk)
    full_export_tables,  # noqa: F401  (full-export deletion check)
    ledger_tables,  # noqa: F401  (posting ledger, windows, lock)
    outbound_tables,  # noqa: F401  (status feedback and other outbound feeds)
    resource_plan_tables,  # noqa: F401  (plan vs actual)
    revenue_tables,  # noqa: F401  (recognized revenue)
    tables,
)
from staging_models.tables import SCHEMA_VERSION, metadata

__all__ = ["SCHEMA_VERSION", "metadata"]
