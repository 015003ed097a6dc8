"""Dagster resources for posting: the ERP target and the posting policy.

The ERP password comes through `EnvVar` and never appears in logs, metadata or
exception messages (URLs are shown with the password masked). The posting
policy (allowed hours, closed-period policy) is deployment configuration, not a
Launchpad field: whoever launches a window can give an override reason, but
cannot widen the hours.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

from dagster import ConfigurableResource, EnvVar
from pydantic import Field
from sqlalchemy.engine import make_url

from connectors.erp.base import ErpTarget
from pipelines.resources import data_dir


def default_erp_url() -> str:
    """The embedded demo ERP: interface tables in a DuckDB file under the data folder."""
    return f"duckdb:///{data_dir() / 'erp_interface.duckdb'}"


class ErpResource(ConfigurableResource):
    """Where posting goes: SQL interface tables (`sql`) or a Tryton server (`tryton`)."""

    kind: str = Field(default="sql", description="sql | tryton")
    url: str = Field(
        default="",
        description="sql: duckdb:///path or postgresql://user@host/db (empty = demo DuckDB "
        "file under the data folder); tryton: http(s)://host:8000/",
    )
    password: str | None = Field(default=None, description="Set via EnvVar; kept out of the URL")
    database: str = Field(default="", description="tryton: database name")
    user: str = Field(default="admin", description="tryton: user")
    legal_entities: dict[str, int] = Field(
        default_factory=dict, description="tryton: company id per legal entity code"
    )

    def get_target(self) -> ErpTarget:
        if self.kind == "sql":
            from connectors.erp.sql_interface import SqlInterfaceTarget

            url = self.url or default_erp_url()
            if self.password:
                url = (
                    make_url(url).set(password=self.password).render_as_string(hide_password=False)
                )
            return SqlInterfaceTarget(url)
        if self.kind == "tryton":
            from connectors.erp.tryton import TrytonTarget  # optional extra: stagepost[tryton]

            return TrytonTarget(
                url=self.url,
                database=self.database,
                user=self.user,
                password=self.password or "",
                legal_entities=self.legal_entities or None,
            )
        raise ValueError(f"unknown ERP kind {self.kind!r}: use 'sql' or 'tryton'")

    def describe(self) -> str:
        if self.kind == "sql":
            return make_url(self.url or default_erp_url()).render_as_string(hide_password=True)
        return f"tryton {self.url} database {self.database}"


class PostingPolicy(ConfigurableResource):
    """How posting windows behave in this deployment."""

    posting_hours: str = Field(
        default="",
        description="Allowed posting hours, e.g. 'mon-fri 17:00-20:00 Europe/Berlin' "
        "(several separated by ';'); empty = any time",
    )
    closed_period_policy: str = Field(
        default="next_open", description="next_open (book into the next open period) | hold"
    )
    batch_size: int = Field(default=20_000, description="Time lines per ERP request")
    invoice_batch_size: int = Field(default=500, description="Invoices per ERP request")
    preview_dir: str = Field(default="", description="Preview workbooks; empty = <data>/previews")
    lock_stale_minutes: float = Field(
        default=15.0, description="A window without heartbeat this long is considered dead"
    )

    def previews(self) -> Path:
        path = Path(self.preview_dir) if self.preview_dir else data_dir() / "previews"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def lock_stale_after(self) -> timedelta:
        return timedelta(minutes=self.lock_stale_minutes)


def erp_resource() -> ErpResource:
    """ErpResource from STAGEPOST_ERP_* environment variables (password as EnvVar)."""
    e = os.environ
    return ErpResource(
        kind=e.get("STAGEPOST_ERP_KIND", "sql"),
        url=e.get("STAGEPOST_ERP_URL", ""),
        password=EnvVar("STAGEPOST_ERP_PASSWORD") if e.get("STAGEPOST_ERP_PASSWORD") else None,
        database=e.get("STAGEPOST_ERP_DATABASE", ""),
        user=e.get("STAGEPOST_ERP_USER", "admin"),
        # Tryton: legal entity -> company id, e.g. {"US01": 1, "DE01": 2}; default: company name.
        legal_entities=json.loads(e.get("STAGEPOST_ERP_LEGAL_ENTITIES", "{}")),
    )


def posting_policy_resource() -> PostingPolicy:
    e = os.environ
    return PostingPolicy(
        posting_hours=e.get("STAGEPOST_POSTING_HOURS", ""),
        closed_period_policy=e.get("STAGEPOST_CLOSED_PERIOD_POLICY", "next_open"),
        preview_dir=e.get("STAGEPOST_PREVIEW_DIR", ""),
    )
