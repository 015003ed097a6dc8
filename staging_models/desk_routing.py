"""Owners and due dates of exceptions, from the routing rules in the configuration.

Owner: the first match of `STAGEPOST_DESK_ROUTING`'s `rules` (any of the row's rule codes, in
code order), then, with `"project_manager": true`, the manager of the row's project (master data:
`project_manager` of the current project version), `datasets`, `entities` (legal entity), else
`default` (`finance-ops`).
Due date: the day the row was first seen plus the service level of its rule class in business
days (Monday to Friday); a row breaking several rules gets the shortest. Both are vectorised
over a frame of exceptions (numpy's business-day arithmetic), never a loop over rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from config.settings import current

DEFAULT_OWNER = "finance-ops"
DEFAULT_DAYS = {"format": 1, "master_data": 2, "data": 3}

#: Rules a master-data fix resolves (the row itself is right; a project, employee, task or
#: rate card is missing or wrong).
_MASTER_DATA = (
    "_UNKNOWN_EMPLOYEE",
    "_UNKNOWN_PROJECT",
    "_UNKNOWN_TASK",
    "_PROJECT_NOT_VALID",
    "_PROJECT_CLOSED",
    "_PROJECT_ON_HOLD",
    "_OUTSIDE_PROJECT_DATES",
    "_LEGAL_ENTITY_MISMATCH",
    "_CURRENCY_MISMATCH",
    "_CUSTOMER_MISMATCH",
    "_RATE_MISSING",
    "_OVERLAP",
)
#: Rules about the value as written (the PSA export must be fixed and sent again).
_FORMAT = ("_FORMAT", "_MISSING", "_INVALID", "_STATUS_UNKNOWN", "_KIND_UNKNOWN", "_METHOD_UNKNOWN")


def rule_class(code: str) -> str:
    """`master_data`, `format` or `data` (everything else: ranges, duplicates, invoices)."""
    if code.endswith(_MASTER_DATA):
        return "master_data"
    if code.endswith(_FORMAT):
        return "format"
    return "data"


def service_days() -> dict[str, int]:
    days = {**DEFAULT_DAYS, **{k: int(v) for k, v in current().desk_service_days.items()}}
    return days


def routing() -> Mapping[str, Any]:
    return current().desk_routing


def owners(frame: pd.DataFrame, rules: Mapping[str, Any] | None = None) -> pd.Series:
    """The owner of each exception (columns rule_codes, dataset, legal_entity, and
    project_manager for the `project_manager` rule kind: empty where the project has none)."""
    rules = routing() if rules is None else rules
    by_rule: Mapping[str, str] = rules.get("rules", {})
    owner = pd.Series(None, index=frame.index, dtype="object")
    candidates = []
    if by_rule:
        codes = frame["rule_codes"].str.split(",").explode()
        first = codes.map(by_rule).dropna().groupby(level=0).first()
        candidates.append(first.reindex(frame.index).astype("object"))
    if rules.get("project_manager") and "project_manager" in frame:
        manager = frame["project_manager"].astype("object").str.strip()
        candidates.append(manager.where(manager.str.len() > 0))
    candidates.append(frame["dataset"].map(rules.get("datasets", {})).astype("object"))
    candidates.append(frame["legal_entity"].map(rules.get("entities", {})).astype("object"))
    for candidate in candidates:
        owner = owner.where(owner.notna(), candidate)
    return owner.where(owner.notna(), rules.get("default", DEFAULT_OWNER)).astype(str)


def due_dates(frame: pd.DataFrame, days: Mapping[str, int] | None = None) -> pd.Series:
    """The due date of each exception (columns rule_codes, first_seen)."""
    days = service_days() if days is None else days
    codes = frame["rule_codes"].str.split(",").explode()
    # One lookup per distinct rule code (about a hundred), then a vectorised map.
    per_code = {c: days.get(rule_class(c), days.get("data", 3)) for c in codes.unique()}
    levels = codes.map(per_code)
    shortest = levels.groupby(level=0).min().reindex(frame.index).fillna(days.get("data", 3))
    seen = pd.to_datetime(frame["first_seen"], utc=True).dt.tz_convert(None)
    start = seen.dt.normalize().values.astype("datetime64[D]")
    due = np.busday_offset(start, shortest.astype(int).to_numpy(), roll="forward")
    return pd.Series(due, index=frame.index).dt.date
