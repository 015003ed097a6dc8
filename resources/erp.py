"""Dagster resources for posting: the ERP target and the posting policy.

The ERP password comes through `EnvVar` and never appears in logs, metadata or
exception messages (URLs are shown with the password masked). The posting
policy (allowed hours, closed-period policy) is deployment configuration, not a
Launchpad field: whoever launches a window can give an override reason, but
cannot widen the hours.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from connectors.erp.base import ErpTarget
from posting.window import WindowConfig
from staging_models.db import data_dir, redact_url, url_with_password


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
    expense_clearing_account: int = Field(
        default=0, description="tryton: account id company-paid expenses are credited to (0: none)"
    )

    def get_target(self) -> ErpTarget:
        if self.kind == "sql":
            from connectors.erp.sql_interface import SqlInterfaceTarget

            return SqlInterfaceTarget(
                url_with_password(self.url or default_erp_url(), self.password)
            )
        if self.kind == "tryton":
            from connectors.erp.tryton import TrytonTarget  # optional extra: stagepost[tryton]

            return TrytonTarget(
                url=self.url,
                database=self.database,
                user=self.user,
                password=self.password or "",
                legal_entities=self.legal_entities or None,
                expense_clearing_account=self.expense_clearing_account or None,
            )
        raise ValueError(f"unknown ERP kind {self.kind!r}: use 'sql' or 'tryton'")

    def describe(self) -> str:
        if self.kind == "sql":
            return redact_url(self.url or default_erp_url())
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
    billing_hold_time_and_expenses: str = Field(
        default="post",
        description="post | hold: time lines of a project on a billing hold (invoices are held)",
    )
    batch_size: int = Field(
        default=WindowConfig.batch_size, description="Time lines per ERP request"
    )
    invoice_batch_size: int = Field(
        default=WindowConfig.invoice_batch_size, description="Invoices per ERP request"
    )
    preview_dir: str = Field(default="", description="Preview workbooks; empty = <data>/previews")
    revenue_accounts: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Revenue journals' accounts per legal entity ('*': all) and role "
        "(wip, revenue, unbilled, deferred); missing ones take the defaults (docs/revenue.md)",
    )
    intercompany_accounts: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Intercompany pairs' accounts per legal entity ('*': all) and role "
        "(ic_cost, ic_payable, ic_receivable, ic_revenue); missing ones take the defaults "
        "(docs/intercompany.md)",
    )
    lock_stale_seconds: float = Field(
        default=900.0,
        description="A window without heartbeat this long (seconds) is considered dead; a "
        "holder on this host whose process is gone or a zombie is taken over at once",
    )

    def previews(self) -> Path:
        path = Path(self.preview_dir) if self.preview_dir else data_dir() / "previews"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def lock_stale_after(self) -> timedelta:
        if self.lock_stale_seconds <= 0:
            raise ValueError("STAGEPOST_POSTING_LOCK_STALE_SECONDS must be more than 0")
        return timedelta(seconds=self.lock_stale_seconds)
