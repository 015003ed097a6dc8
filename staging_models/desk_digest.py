"""The daily digest's content and delivery: one e-mail per owner with their new exceptions
(first seen in the last day) and their overdue ones, each with its link on the desk, over SMTP.

Addresses: `STAGEPOST_DESK_OWNER_EMAILS` (owner to address), else the e-mail of the desk user
of that name, else the `manager_email` of projects whose `project_manager` the owner is; an owner without an address is returned, not skipped silently. Below the desk so
both callers share it: the command `stagepost-desk-digest` (`desk/digest.py`) and the scheduled
Dagster job `desk_digest_job` (`pipelines/desk_jobs.py`).
"""

from __future__ import annotations

import smtplib
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import sqlalchemy as sa

from config.settings import current
from staging_models import desk_items
from staging_models.db import StagingDB

LISTED = 50  # lines per section of one e-mail; the counts are always whole


@dataclass
class Digest:
    owner: str
    address: str | None
    new: list[dict[str, Any]] = field(default_factory=list)
    overdue: list[dict[str, Any]] = field(default_factory=list)
    new_total: int = 0
    overdue_total: int = 0


def _lines(conn, where: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        dict(r._mapping)
        for r in conn.execute(
            sa.text(
                f"""SELECT a.owner, i.dataset, i.group_key, i.row_key, i.key_missing, i.rule_codes,
                           i.first_seen, a.due_date
                    FROM desk_items i JOIN desk_assignments a
                      ON a.dataset = i.dataset AND a.group_key = i.group_key
                    WHERE i.status = 'open' AND {where}
                    ORDER BY a.owner, a.due_date, i.first_seen, i.dataset, i.group_key"""
            ),
            params,
        )
    ]


def collect(db: StagingDB, now: datetime | None = None) -> list[Digest]:
    """Each owner's digest (owners with nothing new and nothing overdue get none)."""
    now = now or datetime.now(UTC)
    desk_items.refresh(db)
    with db.engine.connect() as conn:
        new = _lines(conn, "i.first_seen >= :since", {"since": now - timedelta(days=1)})
        late = _lines(conn, "a.due_date < :today", {"today": now.date()})
        # Project managers' addresses from master data, then desk users', then the setting's.
        emails = {
            r.project_manager: r.manager_email
            for r in conn.execute(
                sa.text(
                    """SELECT project_manager, max(manager_email) AS manager_email
                       FROM stg_projects WHERE is_current AND project_manager IS NOT NULL
                        AND manager_email IS NOT NULL AND manager_email <> ''
                       GROUP BY project_manager"""
                )
            )
        }
        emails.update(
            (r.username, r.email)
            for r in conn.execute(
                sa.text("SELECT username, email FROM desk_users WHERE active AND email IS NOT NULL")
            )
        )
    emails.update(current().desk_owner_emails)
    out: dict[str, Digest] = {}
    for kind, rows in (("new", new), ("overdue", late)):
        for r in rows:
            d = out.setdefault(r["owner"], Digest(r["owner"], emails.get(r["owner"])))
            setattr(d, f"{kind}_total", getattr(d, f"{kind}_total") + 1)
            if len(getattr(d, kind)) < LISTED:
                getattr(d, kind).append(r)
    return [out[k] for k in sorted(out)]


def _link(r: dict[str, Any], base_url: str) -> str:
    q = urllib.parse.urlencode({"ds": r["dataset"], "gk": r["group_key"]})
    return f"{base_url}/item?{q}"


def message(d: Digest, sender: str, now: datetime, base_url: str) -> EmailMessage:
    """One owner's e-mail; `base_url` is the desk's address as users reach it."""
    msg = EmailMessage()
    msg["From"], msg["To"] = sender, d.address or ""
    msg["Subject"] = (
        f"stagepost: {d.new_total} new, {d.overdue_total} overdue exceptions for {d.owner}"
    )
    body = [f"Exceptions owned by {d.owner} on {now.date().isoformat()}.", ""]
    for title, rows, total in (
        ("New since yesterday", d.new, d.new_total),
        ("Overdue", d.overdue, d.overdue_total),
    ):
        body.append(f"{title}: {total}")
        for r in rows:
            key = "(no key)" if r["key_missing"] else r["row_key"]
            body.append(
                f"- {r['dataset']} {key}: {r['rule_codes']} (due {r['due_date']})  {_link(r, base_url)}"
            )
        if total > len(rows):
            body.append(f"  ... and {total - len(rows)} more on the desk: {base_url}/")
        body.append("")
    msg.set_content("\n".join(body))
    return msg


def send(db: StagingDB, base_url: str, now: datetime | None = None) -> tuple[int, list[str]]:
    """Send every owner's digest; (sent, owners without an address)."""
    now = now or datetime.now(UTC)
    s = current()
    if not s.desk_smtp_host:
        raise RuntimeError("set STAGEPOST_DESK_SMTP_HOST to send the digest")
    digests = collect(db, now)
    missing = [d.owner for d in digests if not d.address]
    ready = [d for d in digests if d.address]
    if ready:
        with smtplib.SMTP(s.desk_smtp_host, s.desk_smtp_port, timeout=30) as smtp:
            for d in ready:
                smtp.send_message(message(d, s.desk_smtp_from, now, base_url))
    return len(ready), missing
