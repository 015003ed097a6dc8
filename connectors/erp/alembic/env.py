"""Alembic environment: runs on the connection `connectors.schema_tracks` passes in."""

from alembic import context

from connectors.schema_tracks import run_env

run_env(context)
