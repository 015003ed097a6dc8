"""What every vendor API offers stagepost: changed time entries since a point, every entry
dated in a range (a full pull), and master data as a whole. Vendor modules implement it and
map their JSON onto canonical rows (dicts of canonical column -> text)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from connectors.sources.api.http import ApiClient

Row = dict[str, str | None]
#: How non-approving vendors' entries land (`STAGEPOST_API_APPROVAL`).
Approval = Literal["submitted", "approved"]


@dataclass(frozen=True)
class Defaults:
    """What an API cannot say, from settings: currency and legal entity where the vendor has
    none, the zone whose local date is an entry's work date, and the approval of vendors that
    do not approve time."""

    currency: str | None = None
    legal_entity: str | None = None
    zone: ZoneInfo = ZoneInfo("UTC")
    approval: Approval = "submitted"


class ApiVendor(ABC):
    """One vendor account, reached through `client`."""

    #: Vendor name: the prefix of its entry ids (`harvest:123`) and the default source name.
    name: str
    #: Whether `changed` reports deletions (Toggl's `server_deleted_at`): if not, scheduled
    #: full pulls find them (`dated`).
    reports_deletions: bool = False
    #: Whether `changed` filters by change time (True) or only by work time (Clockify).
    change_cursor: bool = True
    #: Master datasets pulled whole, nightly.
    master: tuple[str, ...] = ()

    def __init__(self, client: ApiClient, defaults: Defaults) -> None:
        self.client = client
        self.defaults = defaults

    @property
    def key_prefix(self) -> str:
        return f"{self.name}:"

    def entry_id(self, vendor_id: object) -> str:
        return f"{self.key_prefix}{vendor_id}"

    def approval(self, updated_at: str | None) -> tuple[str, str | None, str | None]:
        """(status, approved_at, approved_by) for a vendor that has no approval of its own."""
        if self.defaults.approval == "approved":
            return "approved", updated_at, f"{self.name} (no approval in the vendor)"
        return "submitted", None, None

    @abstractmethod
    def changed(self, since: datetime, until: datetime) -> Iterator[Row]:
        """Time entries changed in [since, until) (by work time when not `change_cursor`)."""

    def dated(self, date_from: date, date_to: date) -> Iterator[Row]:
        """Every time entry dated from `date_from` to `date_to` (both included)."""
        raise NotImplementedError(f"{self.name}: no full pull")

    def snapshot(self, dataset: str) -> Iterator[Row]:
        """Every record of a master dataset."""
        raise NotImplementedError(f"{self.name}: no {dataset} from the API")

    def close(self) -> None:
        self.client.close()
