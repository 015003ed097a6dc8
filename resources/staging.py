"""The staging database resource: the embedded DuckDB file, or PostgreSQL.

Resources are configured from the environment (`resources/settings.py`) so that the same
code location runs the embedded demo and production; secrets (database password, SSH key
passphrase) come through `EnvVar` and never appear in logs or run metadata.
"""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from staging_models.db import (
    StagingDB,
    data_dir,
    default_staging_url,
    redact_url,
    staging_db,
    url_with_password,
)


class StagingDatabase(ConfigurableResource):
    """The staging database. Empty `url` means the embedded DuckDB file under the data folder."""

    url: str = Field(default="", description="duckdb:///path.duckdb or postgresql://user@host/db")
    password: str | None = Field(default=None, description="Set via EnvVar; kept out of the URL")

    def get_db(self) -> StagingDB:
        return staging_db(
            url_with_password(self.url or default_staging_url(data_dir()), self.password)
        )

    def describe(self) -> str:
        return redact_url(self.url or default_staging_url(data_dir()))
