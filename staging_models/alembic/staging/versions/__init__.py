"""Revisions of the staging track (Alembic skips this file)."""
