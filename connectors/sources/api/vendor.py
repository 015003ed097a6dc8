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
#: The task of an entry that has none (Toggl, Clockify), and the customer of a project without
#: a client: the names the file mappings use, so a file and an API pull derive the same rows.
GENERAL_TASK = "General"
NO_CLIENT = "(no client)"
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


def approved(at: str | None, source: str | None, by: str | None = None) -> dict[str, str | None]:
    """Approval columns of an approved entry. `source` says where `approved_at` came from when
    the vendor has no approval time, in the file side's policy terms (`updated_at`,
    `column:<field>`; `mapping.ApprovalPolicy`); None when it is the vendor's own."""
    return {
        "approval_status": "approved",
        "approved_at": at,
        "approved_by": by,
        "approved_at_source": source if at is not None else None,
    }


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
    #: Whether employees, projects and tasks are derived from the pulled entries (vendors
    #: whose master data is not pulled: `connectors.sources.api.derive`).
    derives_master: bool = False

    def __init__(self, client: ApiClient, defaults: Defaults) -> None:
        self.client = client
        self.defaults = defaults

    @property
    def key_prefix(self) -> str:
        return f"{self.name}:"

    def entry_id(self, vendor_id: object) -> str:
        return f"{self.key_prefix}{vendor_id}"

    def approval(
        self, approved_at: str | None, source: str = "updated_at"
    ) -> dict[str, str | None]:
        """Approval columns of a vendor that has no approval of its own
        (`STAGEPOST_API_APPROVAL`): `approved` at `approved_at`, whose origin `source` names in
        the file side's policy terms (`updated_at`, `column:<field>`), or `submitted`."""
        if self.defaults.approval == "approved":
            return approved(approved_at, source, f"{self.name} (no approval in the vendor)")
        return {
            "approval_status": "submitted",
            "approved_at": None,
            "approved_by": None,
            "approved_at_source": None,
        }

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
