"""Alembic scripts of the staging track (see `staging_models.migrations`)."""
