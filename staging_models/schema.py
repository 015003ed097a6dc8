"""Every staging table, imported in one place so `metadata` is complete before DDL runs."""

from staging_models import contract_tables, tables  # noqa: F401  (registers tables)
from staging_models.tables import SCHEMA_VERSION, metadata

__all__ = ["SCHEMA_VERSION", "metadata"]
