"""Revisions of the erp track (Alembic skips this file)."""
