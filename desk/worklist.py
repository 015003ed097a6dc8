"""The worklist: open (and ignored) exceptions, grouped, filtered and paged in SQL.

`desk_items` (rebuilt from the quarantine by `staging_models/desk_items.refresh`, with owners
and due dates from `staging_models/desk_routing.py`) holds one line per group. `page` reads one
page in the worklist's order (oldest first) by keyset, so a deep page costs what the first does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from staging_models import desk_routing as routing
from staging_models.db import StagingDB
from staging_models.desk_items import in_group_sql

PAGE_SIZE = 50
#: Age buckets (days since first seen): label -> (at least, less than).
AGE_BUCKETS: dict[str, tuple[int, int | None]] = {
    "0-2": (0, 3),
    "3-7": (3, 8),
    "8-30": (8, 31),
    "31+": (31, None),
}
STATUSES = ("open", "overdue", "ignored")


@dataclass
class Filters:
    rule: str = ""
    dataset: str = ""
    legal_entity: str = ""
    project: str = ""
    owner: str = ""
    age: str = ""
    status: str = "open"

    @classmethod
    def from_query(cls, q: Any) -> Filters:
        f = cls(**{k: (q.get(k) or "").strip() for k in cls.__dataclass_fields__})
        if f.status not in STATUSES:
            f.status = "open"
        if f.age not in AGE_BUCKETS:
            f.age = ""
        return f

    def as_query(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}

    def where(self, today: date) -> tuple[str, dict[str, Any]]:
        """SQL conditions on `i` (desk_items) and `a` (desk_assignments), with their params."""
        cond, params = [], {}
        if self.status == "ignored":
            cond.append("i.status = 'ignored'")
        else:
            cond.append("i.status = 'open'")
            if self.status == "overdue":
                cond.append("a.due_date < :today")
                params["today"] = today
        if self.rule:
            cond.append("position(',' || :rule || ',' IN ',' || i.rule_codes || ',') > 0")
            params["rule"] = self.rule
        for name, col in (
            ("dataset", "i.dataset"),
            ("legal_entity", "i.legal_entity"),
            ("project", "i.project_code"),
            ("owner", "a.owner"),
        ):
            if getattr(self, name):
                cond.append(f"{col} = :{name}")
                params[name] = getattr(self, name)
        if self.age:
            low, high = AGE_BUCKETS[self.age]
            start = datetime.combine(today, datetime.min.time(), tzinfo=UTC)
            # Age in whole days: first seen on or before `today - low`, after `today - high`.
            cond.append("i.first_seen < :age_to")
            params["age_to"] = start - timedelta(days=low - 1)
            if high is not None:
                cond.append("i.first_seen >= :age_from")
                params["age_from"] = start - timedelta(days=high - 1)
        return " AND ".join(cond), params


@dataclass
class Page:
    rows: list[dict[str, Any]]
    total: int
    next_cursor: str | None
    filters: Filters
    today: date
    owners: list[str] = field(default_factory=list)


def encode_cursor(row: dict[str, Any]) -> str:
    return "\x1f".join([row["first_seen"].isoformat(), row["dataset"], row["group_key"]])


def _decode_cursor(cursor: str) -> tuple[datetime, str, str] | None:
    parts = cursor.split("\x1f")
    if len(parts) != 3:
        return None
    try:
        return datetime.fromisoformat(parts[0]), parts[1], parts[2]
    except ValueError:
        return None


SELECT = """SELECT i.dataset, i.group_key, i.row_key, i.version, i.repeats, i.key_missing,
       i.status, i.rule_codes, i.messages, i.raw_values, i.source_file, i.row_no,
       i.legal_entity, i.project_code, i.first_seen, i.last_seen, a.owner, a.due_date
FROM desk_items i LEFT JOIN desk_assignments a
  ON a.dataset = i.dataset AND a.group_key = i.group_key"""


def page(
    db: StagingDB,
    filters: Filters,
    *,
    after: str | None = None,
    size: int = PAGE_SIZE,
    today: date | None = None,
    count: bool = True,
) -> Page:
    """One page of the worklist after the `after` cursor (oldest first), and the filter's total."""
    today = today or datetime.now(UTC).date()
    where, params = filters.where(today)
    keyset = ""
    if after and (cur := _decode_cursor(after)):
        keyset = " AND (i.first_seen, i.dataset, i.group_key) > (:c_seen, :c_ds, :c_key)"
        params.update(c_seen=cur[0], c_ds=cur[1], c_key=cur[2])
    sql = f"""{SELECT} WHERE {where}{keyset}
              ORDER BY i.first_seen, i.dataset, i.group_key LIMIT {int(size) + 1}"""
    with db.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]
        total = -1
        if count:
            total = conn.execute(
                sa.text(
                    f"""SELECT count(*) FROM desk_items i LEFT JOIN desk_assignments a
                        ON a.dataset = i.dataset AND a.group_key = i.group_key WHERE {where}"""
                ),
                {k: v for k, v in params.items() if not k.startswith("c_")},
            ).scalar_one()
    more = len(rows) > size
    rows = rows[:size]
    for r in rows:
        r["age_days"] = (today - r["first_seen"].astimezone(UTC).date()).days
        r["overdue"] = r["status"] == "open" and r["due_date"] is not None and r["due_date"] < today
        r["codes"] = r["rule_codes"].split(",")
        r["message_list"] = r["messages"].split("; ")
    return Page(rows, total, encode_cursor(rows[-1]) if more and rows else None, filters, today)


def owners_known(db: StagingDB) -> list[str]:
    """Owners to choose from: the routing's teams and everyone who owns something."""
    rules = routing.routing()
    teams = {rules.get("default", routing.DEFAULT_OWNER)}
    for key in ("rules", "datasets", "entities"):
        teams.update(rules.get(key, {}).values())
    with db.engine.connect() as conn:
        cached = conn.execute(sa.text("SELECT value FROM desk_state WHERE key = 'owners'")).scalar()
    teams.update(json.loads(cached) if cached else [])
    return sorted(teams)


def group(db: StagingDB, dataset: str, group_key: str) -> dict[str, Any] | None:
    """One exception group with its quarantine rows, comments and audit trail."""
    with db.engine.connect() as conn:
        head = conn.execute(
            sa.text(f"{SELECT} WHERE i.dataset = :ds AND i.group_key = :gk"),
            {"ds": dataset, "gk": group_key},
        ).first()
        if head is None:
            return None
        item = dict(head._mapping)
        item["rows"] = [
            dict(r._mapping)
            for r in conn.execute(
                sa.text(
                    f"""SELECT q.row_key, q.version, q.status, q.rule_codes, q.source_file,
                               q.row_no, q.first_seen, q.last_seen, q.status_by, q.status_reason
                        FROM quarantine q WHERE q.dataset = :ds AND {in_group_sql("q")}
                        ORDER BY q.last_seen DESC, q.version DESC"""
                ),
                {"ds": dataset, "gk": group_key},
            )
        ]
        item["events"] = [
            {**dict(r._mapping), "run_id": _run_of(r.actor)}
            for r in conn.execute(
                sa.text(
                    f"""SELECT e.row_key, e.version, e.event, e.event_at, e.actor, e.reason
                        FROM quarantine_events e JOIN quarantine q ON q.dataset = e.dataset
                         AND q.row_key = e.row_key AND q.version = e.version
                        WHERE q.dataset = :ds AND {in_group_sql("q")}
                        ORDER BY e.event_at, e.row_key, e.version"""
                ),
                {"ds": dataset, "gk": group_key},
            )
        ]
        item["comments"] = [
            dict(r._mapping)
            for r in conn.execute(
                sa.text(
                    """SELECT author, written_at, body FROM desk_comments
                       WHERE dataset = :ds AND group_key = :gk ORDER BY written_at"""
                ),
                {"ds": dataset, "gk": group_key},
            )
        ]
    return item


_RUN = re.compile(r"\brun ([0-9a-f-]{36})\b")


def _run_of(actor: str | None) -> str | None:
    """The Dagster run an event came from (validation records its actor as `run <id>`)."""
    found = _RUN.search(actor or "")
    return found.group(1) if found else None
