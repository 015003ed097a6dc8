"""Alembic environment: runs on the connection `staging_models.migrations` passes in."""

from alembic import context

from staging_models.migrations import run_env

run_env(context)
