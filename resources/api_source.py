"""The API source resource: one vendor account (Harvest, Toggl, Clockify or Kimai), its token
(a Dagster `EnvVar`, resolved at run time and never shown), and how far its pulls look back."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from dagster import ConfigurableResource
from pydantic import Field, SecretStr

from connectors.sources.api import clockify, harvest, kimai, toggl, toggl_reports
from connectors.sources.api.errors import ApiAuthError
from connectors.sources.api.vendor import ApiVendor, Defaults
from staging_models.api_pull import PullSettings, api_pulls_dir

#: Which settings a vendor needs before it can be pulled (the error names them).
REQUIRED = {
    "harvest": ("token", "account_id"),
    "toggl": ("token",),
    "clockify": ("token", "workspace_id"),
    "kimai": ("token", "url"),
}


class ApiSource(ConfigurableResource):
    """A PSA vendor's API, pulled into staging by the `api_<vendor>_*` assets."""

    vendor: str = Field(description="harvest | toggl | clockify | kimai")
    token: str | None = Field(default=None, description="The API token (an EnvVar: secret)")
    url: str = Field(default="", description="The API's base URL")
    account_id: str = Field(default="", description="Harvest: the account id")
    workspace_id: str = Field(
        default="",
        description="Clockify: the workspace id; Toggl: set, the whole workspace through the "
        "Reports API v3 (else the token owner's entries)",
    )
    user_agent: str = Field(default="stagepost", description="Harvest: the User-Agent it requires")
    lookback_days: float = Field(default=3.0, description="Days asked again before the cursor")
    initial_days: float = Field(default=30.0, description="How far the first pull reaches back")
    full_pull_days: int = Field(default=31, description="Work days a nightly full pull covers")
    timezone: str = Field(default="UTC", description="Zone of the work date (Toggl, Clockify)")
    approval: str = Field(default="submitted", description="submitted | approved (no approval)")
    default_currency: str = Field(default="", description="Currency where the vendor has none")
    default_legal_entity: str = Field(default="", description="Legal entity of master data")
    max_delete_share: str = Field(default="0.05", description="A full pull's truncation guard")

    def missing(self) -> list[str]:
        """The settings still unset, as variable names (empty: ready to pull)."""
        return [
            f"STAGEPOST_{self.vendor.upper()}_{name.upper()}"
            for name in REQUIRED[self.vendor]
            if not getattr(self, name)
        ]

    def defaults(self) -> Defaults:
        return Defaults(
            currency=self.default_currency or None,
            legal_entity=self.default_legal_entity or None,
            zone=ZoneInfo(self.timezone),
            approval="approved" if self.approval == "approved" else "submitted",
        )

    def open(self) -> ApiVendor:
        """The vendor's client; unset settings fail here, naming them (never an empty pull)."""
        missing = self.missing()
        if missing:
            raise ApiAuthError(f"{self.vendor} API is not configured: set {', '.join(missing)}")
        token = SecretStr(self.token or "")
        d = self.defaults()
        if self.vendor == "harvest":
            c = harvest.client(
                token,
                self.account_id,
                base_url=self.url or harvest.BASE_URL,
                user_agent=self.user_agent,
            )
            return harvest.Harvest(c, d)
        if self.vendor == "toggl":
            c = toggl.client(token, base_url=self.url or toggl.BASE_URL)
            if not self.workspace_id:
                return toggl.Toggl(c, d)
            reports = toggl_reports.reports_client(token, c)
            return toggl_reports.TogglWorkspace(c, d, self.workspace_id, reports)
        if self.vendor == "clockify":
            c = clockify.client(token, base_url=self.url or clockify.BASE_URL)
            return clockify.Clockify(c, d, self.workspace_id)
        if self.vendor == "kimai":
            return kimai.Kimai(kimai.client(token, self.url), d)
        raise ValueError(f"unknown API vendor {self.vendor!r}")

    def pull_settings(self) -> PullSettings:
        return PullSettings(
            lookback=timedelta(days=self.lookback_days),
            initial=timedelta(days=self.initial_days),
            full_days=self.full_pull_days,
            max_delete_share=Decimal(self.max_delete_share),
        )

    def folder(self) -> Path:
        """Where the Parquet file of every landed window is kept."""
        return api_pulls_dir() / self.vendor

    def describe(self) -> str:
        out = f"{self.vendor} API at {self.url or 'its default URL'}"
        if self.vendor == "toggl" and self.workspace_id:
            out += f", workspace {self.workspace_id} through the Reports API v3"
        return out
