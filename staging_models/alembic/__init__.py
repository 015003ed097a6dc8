"""Alembic script directory `staging/` (the staging database; the SQL-interface ERP tables' is
`connectors/erp/alembic/`). Driven by `staging_models.migrations`; packages so their files ship."""
