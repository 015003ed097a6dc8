"""Test helpers for posting: stage validated entries and invoices directly (standing in for the
contracts), ERP targets on DuckDB files and PostgreSQL schemas, ERP master data."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from connectors.erp.sql_interface import SqlInterfaceTarget
from connectors.sql import arrow_schema, load_temp
from staging_models.contract_tables import validated_time_entries
from staging_models.db import StagingDB
from staging_models.ledger_tables import ledger_rows
from tests.conftest import PG_URL
from tests.support.erp_faults import FaultySqlInterfaceTarget

D = Decimal
_S = pa.string()

ENTRY_DEFAULTS: dict = {
    "version": 1,
    "legal_entity": "DE01",
    "customer_id": "C1",
    "employee_id": "E1",
    "project_code": "P1",
    "task_code": "T1",
    "work_date": date(2026, 11, 2),
    "hours": D("7.5"),
    "bill_rate": D("100.00"),
    "currency": "EUR",
    "description": "Design review",
    "state": "valid",  # stg_time_entries.state of this (current) version
}

#: A staged entry: the columns of `validated_time_entries` (types from the table) and the
#: state of its current version in `stg_time_entries`.
_ENTRY_SCHEMA = pa.schema(
    [
        *arrow_schema(
            validated_time_entries,
            ["entry_id", *(c for c in ENTRY_DEFAULTS if c != "state"), "amount"],
        ),
        ("state", _S),
    ]
)


def entries_frame(rows: list[dict]) -> pd.DataFrame:
    """Entries with defaults filled and amount = round(hours * rate, 2) (as the contracts do)."""
    df = pd.DataFrame([{**ENTRY_DEFAULTS, **r} for r in rows])
    if "amount" not in df.columns:
        df["amount"] = None
    missing = df["amount"].isna()
    df.loc[missing, "amount"] = [
        (h * r).quantize(D("0.01"), ROUND_HALF_UP)
        for h, r in zip(df.loc[missing, "hours"], df.loc[missing, "bill_rate"], strict=True)
    ]
    return df


def stage_entries(db: StagingDB, rows: list[dict] | pd.DataFrame) -> None:
    """New current versions of time entries, as landing + contracts would leave them.

    The previous current version of each entry becomes superseded; a version in state
    `valid` also gets its validated_time_entries row.
    """
    df = rows if isinstance(rows, pd.DataFrame) else entries_frame(rows)
    now = datetime.now(UTC)
    with db.begin() as conn:
        load_temp(conn, "tmp_stage", df, _ENTRY_SCHEMA)
        conn.exec_driver_sql(
            """UPDATE stg_time_entries SET is_current = FALSE, state = 'superseded'
               WHERE is_current AND row_key IN (SELECT entry_id FROM tmp_stage)"""
        )
        conn.execute(
            sa.text(
                """INSERT INTO stg_time_entries (row_key, version, load_id, row_no, key_missing,
                       content_hash, entry_id, employee_id, project_code, task_code, work_date,
                       hours, billable, bill_rate, currency, approval_status, description,
                       deleted, is_current, state, landed_at)
                   SELECT entry_id, version, 'Ltest', CAST(ord AS INTEGER), FALSE,
                          md5(entry_id || ':' || CAST(version AS VARCHAR)), entry_id,
                          employee_id, project_code, task_code, work_date, hours, TRUE,
                          bill_rate, currency,
                          CASE WHEN state = 'not_postable' THEN 'rejected' ELSE 'approved' END,
                          description, FALSE, TRUE, state, :now
                   FROM tmp_stage"""
            ),
            {"now": now},
        )
        conn.execute(
            sa.text(
                """INSERT INTO validated_time_entries (entry_id, version, content_hash,
                       legal_entity, customer_id, employee_id, project_code, task_code,
                       work_date, hours, billable, bill_rate, rate_source, amount, currency,
                       description, validated_at)
                   SELECT entry_id, version, md5(entry_id || ':' || CAST(version AS VARCHAR)),
                          legal_entity, customer_id, employee_id, project_code, task_code,
                          work_date, hours, TRUE, bill_rate, 'entry', amount, currency,
                          description, :now
                   FROM tmp_stage WHERE state = 'valid'"""
            ),
            {"now": now},
        )


def next_version(db: StagingDB, entry_id: str) -> int:
    return (
        int(
            db.scalar(
                "SELECT MAX(version) FROM stg_time_entries WHERE row_key = :e", {"e": entry_id}
            )
            or 0
        )
        + 1
    )


def correct(db: StagingDB, entry_id: str, **changes) -> int:
    """Stage a new version of an entry with some values changed; returns its version."""
    v = next_version(db, entry_id)
    stage_entries(db, [{"entry_id": entry_id, "version": v, **changes}])
    return v


def stage_invoice(
    db: StagingDB,
    invoice_id: str,
    lines: list[dict],
    *,
    status: str = "released",
    state: str = "valid",
    issue_date: date = date(2026, 11, 30),
    legal_entity: str = "DE01",
    project_code: str = "P1",
    customer_id: str = "C1",
    currency: str = "EUR",
) -> None:
    """Stage (new versions of) invoice lines; each line dict: line_no, amount, quantity, ..."""
    now = datetime.now(UTC)
    with db.begin() as conn:
        for ln in lines:
            no = ln["line_no"]
            v = (
                int(
                    conn.execute(
                        sa.text(
                            "SELECT COALESCE(MAX(version), 0) FROM stg_invoices "
                            "WHERE invoice_id = :i AND line_no = :n"
                        ),
                        {"i": invoice_id, "n": no},
                    ).scalar()
                )
                + 1
            )
            qty = ln.get("quantity", D("1"))
            amount = ln.get("amount", D("100.00"))
            price = ln.get("unit_price", amount / qty if qty else amount)
            conn.execute(
                sa.text(
                    "UPDATE stg_invoices SET is_current = FALSE, state = 'superseded' "
                    "WHERE is_current AND invoice_id = :i AND line_no = :n"
                ),
                {"i": invoice_id, "n": no},
            )
            common = {
                "i": invoice_id,
                "n": no,
                "v": v,
                "p": project_code,
                "c": customer_id,
                "cur": currency,
                "d": issue_date,
                "s": status,
                "k": ln.get("line_kind", "time"),
                "desc": ln.get("description", f"Line {no}"),
                "q": qty,
                "u": price,
                "a": amount,
                "st": state,
                "now": now,
                "le": legal_entity,
                "rk": f"{invoice_id}|{no}",
            }
            conn.execute(
                sa.text(
                    """INSERT INTO stg_invoices (row_key, version, load_id, row_no, key_missing,
                           content_hash, invoice_id, project_code, customer_id, currency,
                           issue_date, status, line_no, line_kind, description, quantity,
                           unit_price, amount, is_current, state, landed_at)
                       VALUES (:rk, :v, 'Ltest', :n, FALSE, 'h', :i, :p, :c, :cur, :d, :s, :n,
                               :k, :desc, :q, :u, :a, TRUE, :st, :now)"""
                ),
                common,
            )
            if state == "valid":
                conn.execute(
                    sa.text(
                        """INSERT INTO validated_invoice_lines (invoice_id, line_no, version,
                               content_hash, legal_entity, project_code, customer_id, currency,
                               issue_date, status, line_kind, description, quantity,
                               unit_price, amount, validated_at)
                           VALUES (:i, :n, :v, 'h', :le, :p, :c, :cur, :d, :s, :k, :desc, :q,
                                   :u, :a, :now)"""
                    ),
                    common,
                )


# -- ERP master data --------------------------------------------------------------------------


def master_frames(
    legal_entities: tuple[str, ...] = ("DE01", "US01"),
    projects: int = 3,
    employees: int = 5,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Customers, employees, projects (P1.. in DE01/EUR, UP1.. in US01/USD) and tasks T1, T2."""
    customers = pd.DataFrame({"customer_id": ["C1", "C2"], "customer_name": ["Acme", "Globex"]})
    emp = pd.DataFrame(
        {
            "employee_id": [f"E{i}" for i in range(1, employees + 1)],
            "employee_name": [f"Employee {i}" for i in range(1, employees + 1)],
            "legal_entity": legal_entities[0],
        }
    )
    proj_rows = []
    for le, prefix, cur in (("DE01", "P", "EUR"), ("US01", "UP", "USD")):
        if le in legal_entities:
            proj_rows += [
                {
                    "project_code": f"{prefix}{i}",
                    "project_name": f"Project {prefix}{i}",
                    "customer_id": "C1",
                    "legal_entity": le,
                    "currency": cur,
                }
                for i in range(1, projects + 1)
            ]
    proj = pd.DataFrame(proj_rows)
    tasks = pd.DataFrame(
        [
            {"project_code": p, "task_code": t, "task_name": f"Task {t}"}
            for p in proj["project_code"]
            for t in ("T1", "T2")
        ]
    )
    return customers, emp, proj, tasks


def with_master_data(erp) -> None:
    erp.ensure_master_data(*master_frames())


# -- databases ----------------------------------------------------------------------------------


@contextmanager
def pg_schema(pg_available: bool, prefix: str = "sp_erp") -> Iterator[str]:
    """A throwaway PostgreSQL schema; yields a URL whose search_path is that schema."""
    if not pg_available:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {PG_URL} is not reachable; CI requires it")
        pytest.skip(f"PostgreSQL at {PG_URL} is not reachable on this machine")
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def duck_erp(path: Path, **kw) -> SqlInterfaceTarget:
    return SqlInterfaceTarget(f"duckdb:///{path}", **kw)


def erp_lines(erp: SqlInterfaceTarget) -> pd.DataFrame:
    """Every time line in the ERP."""
    return erp.read_time_lines(date(1900, 1, 1), date(2999, 12, 31))


def erp_net_hours(erp: SqlInterfaceTarget) -> dict[str, Decimal]:
    """Net hours per entry in the ERP (posts minus reversals), zero entries left out."""
    lines = erp_lines(erp)
    if lines.empty:
        return {}
    net = lines.groupby("entry_id")["hours"].apply(lambda s: sum(s, D(0)))
    return {k: v for k, v in net.items() if v != 0}


def ledger(db: StagingDB, table: str = "posting_ledger") -> pd.DataFrame:
    """A ledger's rows, each line's state as its batch makes it (`ledger_rows`)."""
    return db.query_df(f"SELECT * FROM {ledger_rows(table)} l ORDER BY external_id")


# -- a staging database and an ERP side by side ----------------------------------------------


@dataclass
class PostingEnv:
    """Staging + SQL interface ERP on the same backend, with master data loaded."""

    kind: str
    db: StagingDB
    erp: SqlInterfaceTarget
    erp_url: str
    tmp_path: Path

    def window(self, erp: SqlInterfaceTarget | None = None, hooks=None, **config):
        """A real (not dry) window, retries without sleeping; `hooks` as `run_window` takes them."""
        from posting.window import RetryPolicy, WindowConfig, run_window

        config.setdefault("dry_run", False)
        config.setdefault("retry", RetryPolicy(attempts=3, base_delay=0))
        return run_window(
            self.db, erp or self.erp, WindowConfig(**config), sleep=lambda s: None, hooks=hooks
        )

    def faulty_erp(self, faults) -> SqlInterfaceTarget:
        """A second handle on the same ERP database that injects faults."""
        return FaultySqlInterfaceTarget(self.erp_url, faults=faults)
