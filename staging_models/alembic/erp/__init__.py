"""Alembic scripts of the erp track (see `staging_models.migrations`)."""
