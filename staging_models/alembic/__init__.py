"""Alembic script directories: `staging/` (the staging database) and `erp/` (the SQL-interface
ERP tables). Driven by `staging_models.migrations`; packages so their files ship."""
