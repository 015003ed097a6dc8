"""Alembic scripts of the erp track: the SQL-interface ERP tables (`connectors.erp.sql_interface.ERP`,
run by `staging_models.migrations`); a package so its files ship."""
