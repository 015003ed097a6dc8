"""The relations reconciliation reads, made available in one DuckDB connection.

The comparison itself is DuckDB SQL over relations named `r_*` (see `compare`),
so it runs the same whatever the staging database is:

- DuckDB staging: each `r_*` input is a temporary view on the staging connection
  itself, so nothing is copied;
- PostgreSQL staging: each input SELECT runs in PostgreSQL (filters and joins
  there, so only the period's rows travel), streams out through COPY as CSV, is
  parsed by pyarrow with an explicit schema (decimals stay exact), and is
  registered as an Arrow table in an in-memory DuckDB. The inputs with a `lazy`
  form are read only for a few entries (`rc_k`): with `KeyedInputs` they travel
  once those entries are known, and only theirs (each row travelling costs ~5 µs:
  COPY sends one message per row).

ERP frames (`ErpTarget.read_*` answers, pandas with `Decimal`) and rows of PSA
files not landed yet arrive as Arrow tables and are registered the same way.
"""

from __future__ import annotations

import io
import os
import select
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

import duckdb
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import pq

from connectors.erp.base import EXPENSE_LINE_COLUMNS, INVOICE_COLUMNS, TIME_LINE_COLUMNS
from connectors.erp.documents import EXPENSE_LINE, INVOICE, TIME_LINE
from connectors.sql import sql_literal
from staging_models.db import StagingDB
from staging_models.full_export import REASON as VANISHED_REASON
from staging_models.ledger_tables import ledger_rows

_S, _D, _B, _I = pa.string(), pa.date32(), pa.bool_(), pa.int64()
_TS = pa.timestamp("us", tz="UTC")
# 18 digits: DuckDB keeps them in 64-bit integers (wider ones are 128-bit and slower).
_HOURS, _RATE, _MONEY = pa.decimal128(18, 4), pa.decimal128(18, 4), pa.decimal128(18, 2)

#: ERP time lines as reconciliation reads them (`TIME_LINE_COLUMNS`, declared in
#: `connectors.erp.documents`), decimals 18 digits wide: wide enough for any ERP.
ERP_TIME_LINE_SCHEMA = TIME_LINE.arrow_schema(decimal_precision=18)
#: ERP invoice headers (`INVOICE_COLUMNS`: the declared fields and the ERP's status).
ERP_INVOICE_SCHEMA = pa.schema(
    [*INVOICE.arrow_schema(decimal_precision=18), pa.field("status", pa.string())]
)
#: ERP expense lines (`EXPENSE_LINE_COLUMNS`), decimals 18 digits wide.
ERP_EXPENSE_LINE_SCHEMA = EXPENSE_LINE.arrow_schema(decimal_precision=18)
assert tuple(ERP_EXPENSE_LINE_SCHEMA.names) == EXPENSE_LINE_COLUMNS
assert tuple(ERP_TIME_LINE_SCHEMA.names) == TIME_LINE_COLUMNS
assert tuple(ERP_INVOICE_SCHEMA.names) == INVOICE_COLUMNS

#: Rows of PSA time-entry files that are complete in the source but not landed yet.
UNLANDED_SCHEMA = pa.schema(
    [
        ("file_name", _S),
        ("entry_id", _S),
        ("content_hash", _S),
        ("work_date", _D),
        ("hours", _HOURS),
        ("project_code", _S),
        ("employee_id", _S),
        ("currency", _S),
    ]
)


#: PostgreSQL's work_mem for the statements that read reconciliation's inputs.
PG_READ_WORK_MEM = "64MB"
#: Inputs read from PostgreSQL side by side (connections of the staging pool).
PG_READERS = 2
#: PostgreSQL's random_page_cost for the keyed reads (`_pg_load_keyed`).
PG_KEYED_RANDOM_PAGE_COST = 1.1


@dataclass(frozen=True)
class FullExport:
    """The load that reconciliation treats as the PSA's complete snapshot (see `compare`)."""

    load_id: str
    file_name: str
    started_at: object  # datetime
    work_date_min: date
    work_date_max: date
    #: Its judgement at landing (`full_exports.status`), None if it was landed without one.
    status: str | None = None
    vanished_entries: int | None = None


@dataclass(frozen=True)
class Input:
    """One relation read from staging: its portable SELECT and the Arrow schema of its columns.

    `lazy`, if set, is what a DuckDB staging connection exposes instead: a superset that is
    free to define as a view because the reconciliation SQL only ever reads it restricted to
    a few entries (`rc_k`), while `select` is what travels from PostgreSQL.
    """

    name: str
    schema: pa.Schema
    select: str
    lazy: str | None = None


_PSA_COLS = [
    ("entry_id", _S),
    ("version", _I),
    ("state", _S),
    ("employee_id", _S),
    ("employee_name", _S),
    ("project_code", _S),
    ("task_code", _S),
    ("work_date", _D),
    ("hours", _HOURS),
    ("billable", _B),
    ("bill_rate", _RATE),
    ("currency", _S),
    ("approval_status", _S),
    ("approved_at", _TS),
    ("deleted", _B),
    ("description", _S),
    ("landed_at", _TS),
    ("vanished_from", _S),
]
#: For a tombstone made because the entry was missing from a full export: that file's name.
_VANISHED_FROM = f"""CASE WHEN s.deleted THEN (SELECT ld.file_name FROM loads ld
    WHERE ld.load_id = s.load_id AND ld.source_name = '{VANISHED_REASON}') END AS vanished_from"""
_PSA_EXPR = {"entry_id": "s.row_key AS entry_id", "vanished_from": _VANISHED_FROM}
# An entry's id is its row key (set for rows without an entry id too, see `landing`).
_PSA_SELECT = ", ".join(_PSA_EXPR.get(name, f"s.{name}") for name, _ in _PSA_COLS)
_LEDGER_COLS = [
    ("external_id", _S),
    ("kind", _S),
    ("entry_id", _S),
    ("entry_version", _I),
    ("reverses_external_id", _S),
    ("legal_entity", _S),
    ("employee_id", _S),
    ("project_code", _S),
    ("work_date", _D),
    ("hours", _HOURS),
    ("amount", _MONEY),
    ("currency", _S),
    ("state", _S),
    ("erp_message", _S),
    ("settled_at", _TS),
]
_LEDGER_SELECT = ", ".join(name for name, _ in _LEDGER_COLS)
#: The time-line ledger with each line's state as its batch makes it.
_TIME_LEDGER = ledger_rows("posting_ledger")

#: A current version `s` that is not postable (draft, submitted, rejected or deleted) and has
#: never had a ledger line: unless the ERP has a line for it, or newer content waits, it is
#: classified `not_postable` and only counted (`_sql.PLAIN`), not compared line by line (14%
#: of the sample's entries: most of what the exact path read).
_PLAIN = """(s.state = 'not_postable' AND NOT EXISTS (
    SELECT 1 FROM posting_ledger x WHERE x.entry_id = s.row_key))"""
#: The ledger columns a line must agree with its ERP line on (`_sql._fingerprint`).
_FINGERPRINTED = (
    "external_id",
    "entry_version",
    "hours",
    "amount",
    "project_code",
    "work_date",
    "currency",
    "legal_entity",
    "employee_id",
)


def le_filter(column: str, legal_entities: Sequence[str]) -> str:
    """SQL keeping rows whose `column` is one of `legal_entities` (all rows when empty)."""
    if not legal_entities:
        return "TRUE"
    return f"{column} IN ({', '.join(sql_literal(le) for le in legal_entities)})"


def staging_inputs(
    date_from: date,
    date_to: date,
    full: FullExport | None,
    legal_entities: Sequence[str] = (),
    *,
    unlanded: bool = True,
) -> list[Input]:
    """The staging relations one reconciliation needs, restricted to the period.

    An entry belongs to the period if its current version or one of its ledger lines is
    dated in it: an entry whose date moved across the boundary is still compared with what
    was posted for it. The fast path reads `r_valid_ledger`, `r_cube` and `r_psa_in`,
    selected by date (and the `legal_entities`, empty for all) alone; the exact path reads
    the `*_all` relations of the entries touching the period, restricted to its few entries.

    The fast path's staging side is joined and summed where staging is (`r_valid_ledger`:
    each valid version beside its ledger line, whether they agree; `r_cube`: the valid
    versions per project, employee and month): on PostgreSQL staging the valid versions and
    the ledger lines, about a million rows each at 1M entries, were the bulk of what crossed
    to DuckDB (one COPY message per row). `r_psa_in` holds the current versions that are not
    valid (with what `_sql.PLAIN` counts of the plain ones, `_PLAIN`), and, when there are PSA
    rows not landed yet (`unlanded`), every current version (their content is compared with
    those rows).
    """
    f, t = sql_literal(date_from), sql_literal(date_to)
    in_range = f"BETWEEN {f} AND {t}"
    le = le_filter("legal_entity", legal_entities)
    if full is None:
        vanished = "SELECT CAST(NULL AS VARCHAR) AS entry_id WHERE FALSE"
    else:
        lo, hi = sql_literal(full.work_date_min), sql_literal(full.work_date_max)
        load = sql_literal(full.load_id)
        vanished = f"""SELECT s.row_key AS entry_id FROM stg_time_entries s
            WHERE s.is_current AND NOT s.key_missing AND NOT s.deleted
              AND s.work_date BETWEEN {lo} AND {hi} AND s.work_date {in_range}
              -- newer than everything in the export: it may postdate the snapshot
              AND COALESCE(s.updated_at <= (SELECT MAX(f.updated_at) FROM land_time_entries f
                                            WHERE f.load_id = {load}), TRUE)
              AND NOT EXISTS (
                SELECT 1 FROM land_time_entries l JOIN loads d ON d.load_id = l.load_id
                WHERE l.row_key = s.row_key AND d.status = 'landed'
                  AND (d.load_id = {load}
                       OR d.started_at > (SELECT started_at FROM loads WHERE load_id = {load})))"""
    led_in = f"SELECT entry_id FROM posting_ledger WHERE work_date {in_range}"
    psa_in = (
        "SELECT row_key FROM stg_time_entries "
        f"WHERE is_current AND NOT key_missing AND work_date {in_range}"
    )
    inv_led_in = f"SELECT invoice_id FROM invoice_ledger WHERE issue_date {in_range}"
    inv_psa_in = (
        "SELECT invoice_id FROM stg_invoices "
        f"WHERE is_current AND invoice_id IS NOT NULL AND issue_date {in_range}"
    )
    return [
        Input(
            "r_valid_ledger",
            pa.schema(
                [
                    ("entry_id", _S),
                    ("p_version", _I),
                    ("p_amount", _MONEY),
                    ("p_legal_entity", _S),
                    ("l_ok", _B),
                    *((name, typ) for name, typ in _LEDGER_COLS if name in _FINGERPRINTED),
                ]
            ),
            # The current valid versions (validation keeps validated rows for exactly those)
            # beside the ledger lines of the period. `l_ok`: the line is a confirmed post of
            # that version with its hours and amount.
            f"""SELECT COALESCE(p.entry_id, l.entry_id) AS entry_id, p.version AS p_version,
                   p.amount AS p_amount, p.legal_entity AS p_legal_entity,
                   COALESCE(l.kind = 'post' AND l.state = 'confirmed'
                            AND l.entry_version = p.version AND l.hours = p.hours
                            AND l.amount = p.amount, FALSE) AS l_ok,
                   {", ".join(f"l.{c}" for c in _FINGERPRINTED)}
            FROM (SELECT entry_id, version, hours, amount, legal_entity
                  FROM validated_time_entries WHERE work_date {in_range} AND {le}) p
            FULL JOIN (SELECT * FROM {_TIME_LEDGER} x WHERE work_date {in_range} AND {le}) l
                 ON l.entry_id = p.entry_id""",
        ),
        Input(
            "r_cube",
            pa.schema(
                [
                    ("project_code", _S),
                    ("employee_id", _S),
                    ("ym", _I),
                    ("legal_entity", _S),
                    ("currency", _S),
                    ("n", _I),
                    ("nq", _I),
                    ("hours", pa.decimal128(38, 4)),
                    ("amount", pa.decimal128(38, 2)),
                ]
            ),
            # Every valid current version of the period per project, employee and month
            # (grouped by the month's first day: PostgreSQL's EXTRACT is numeric arithmetic,
            # per row it made the cube 35% slower). The day truncated as a TIMESTAMP: a DATE
            # is cast to TIMESTAMPTZ on PostgreSQL, truncated in the session's time zone
            # (same month, 15% more of the cube's time at 1M entries).
            f"""SELECT project_code, employee_id,
                   CAST(EXTRACT(YEAR FROM m) * 100 + EXTRACT(MONTH FROM m) AS BIGINT) AS ym,
                   legal_entity, currency, n, nq, hours, amount
            FROM (SELECT v.project_code, v.employee_id,
                         date_trunc('month', CAST(v.work_date AS TIMESTAMP)) AS m,
                         MIN(v.legal_entity) AS legal_entity, MIN(v.currency) AS currency,
                         COUNT(*) AS n, COUNT(q.row_key) AS nq, SUM(v.hours) AS hours,
                         SUM(v.amount) AS amount
                  FROM validated_time_entries v
                  LEFT JOIN (SELECT DISTINCT row_key FROM quarantine
                             WHERE dataset = 'time_entries') q ON q.row_key = v.entry_id
                  WHERE v.work_date {in_range} AND {le_filter("v.legal_entity", legal_entities)}
                  GROUP BY 1, 2, 3) g""",
        ),
        Input(
            "r_psa_in",
            pa.schema(
                [
                    ("entry_id", _S),
                    ("state", _S),
                    ("content_hash", _S),
                    ("plain", _B),
                    ("project_code", _S),
                    ("employee_id", _S),
                    ("currency", _S),
                    ("hours", _HOURS),
                    ("billable", _B),
                    ("bill_rate", _RATE),
                ]
            ),
            f"""SELECT s.row_key AS entry_id, s.state, s.content_hash, {_PLAIN} AS plain,
                   s.project_code, s.employee_id, s.currency, s.hours, s.billable, s.bill_rate
            FROM stg_time_entries s
            WHERE s.is_current AND NOT s.key_missing AND s.work_date {in_range}
              {"" if unlanded else "AND s.state <> 'valid'"}""",
        ),
        Input(
            "r_psa_all",
            pa.schema(_PSA_COLS),
            f"""SELECT {_PSA_SELECT} FROM stg_time_entries s
            WHERE s.is_current AND NOT s.key_missing
              AND (s.work_date {in_range} OR s.row_key IN ({led_in}))""",
            lazy=f"""SELECT {_PSA_SELECT} FROM stg_time_entries s
            WHERE s.is_current AND NOT s.key_missing""",
        ),
        Input(
            "r_valid_all",
            pa.schema(
                [
                    ("entry_id", _S),
                    ("version", _I),
                    ("amount", _MONEY),
                    ("legal_entity", _S),
                    ("work_date", _D),
                ]
            ),
            f"""SELECT entry_id, version, amount, legal_entity, work_date
            FROM validated_time_entries
            WHERE work_date {in_range} OR entry_id IN ({led_in})""",
            lazy="""SELECT entry_id, version, amount, legal_entity, work_date
            FROM validated_time_entries""",
        ),
        Input(
            "r_quarantine",
            pa.schema(
                [
                    ("row_key", _S),
                    ("version", _I),
                    ("rule_codes", _S),
                    ("messages", _S),
                    ("status", _S),
                    ("first_seen", _TS),
                ]
            ),
            """SELECT row_key, version, rule_codes, messages, status, first_seen
            FROM quarantine WHERE dataset = 'time_entries'""",
        ),
        Input(
            "r_projects",
            pa.schema([("project_code", _S), ("legal_entity", _S)]),
            "SELECT row_key AS project_code, legal_entity FROM stg_projects WHERE is_current",
        ),
        Input(
            "r_employees",
            pa.schema([("employee_id", _S), ("legal_entity", _S)]),
            "SELECT row_key AS employee_id, legal_entity FROM stg_employees WHERE is_current",
        ),
        Input("r_vanished", pa.schema([("entry_id", _S)]), vanished),
        Input(
            "r_keyless",
            pa.schema(
                [
                    ("entry_id", _S),
                    ("version", _I),
                    ("employee_id", _S),
                    ("employee_name", _S),
                    ("project_code", _S),
                    ("task_code", _S),
                    ("work_date", _D),
                    ("raw_work_date", _S),
                    ("hours", _HOURS),
                    ("currency", _S),
                    ("approval_status", _S),
                    ("approved_at", _TS),
                    ("description", _S),
                    ("source_file", _S),
                    ("row_no", _I),
                    ("rule_codes", _S),
                    ("messages", _S),
                    ("first_seen", _TS),
                    ("legal_entity", _S),
                ]
            ),
            # Quarantined current rows that no entry-and-date comparison can place: no entry
            # id, or no readable work date (these belong to every period while they wait).
            f"""SELECT CASE WHEN s.key_missing THEN NULL ELSE s.row_key END AS entry_id,
                   s.version, s.employee_id, s.employee_name, s.project_code, s.task_code,
                   s.work_date, l.raw_work_date, s.hours, s.currency, s.approval_status,
                   s.approved_at, s.description, d.file_name AS source_file, s.row_no,
                   q.rule_codes, q.messages, q.first_seen,
                   COALESCE(pr.legal_entity, em.legal_entity) AS legal_entity
            FROM stg_time_entries s
            JOIN land_time_entries l ON l.load_id = s.load_id AND l.row_no = s.row_no
            LEFT JOIN loads d ON d.load_id = s.load_id
            LEFT JOIN quarantine q ON q.dataset = 'time_entries' AND q.row_key = s.row_key
                 AND q.version = s.version AND q.status IN ('open', 'ignored')
            LEFT JOIN stg_projects pr ON pr.is_current AND pr.row_key = s.project_code
            LEFT JOIN stg_employees em ON em.is_current AND em.row_key = s.employee_id
            WHERE s.is_current AND s.state = 'quarantined'
              AND (s.key_missing OR s.work_date IS NULL)
              AND (s.work_date IS NULL OR s.work_date {in_range})""",
        ),
        Input(
            "r_ledger_all",
            pa.schema(_LEDGER_COLS),
            f"""SELECT {_LEDGER_SELECT} FROM {_TIME_LEDGER} l
            WHERE entry_id IN ({psa_in}) OR entry_id IN ({led_in})""",
            lazy=f"SELECT {_LEDGER_SELECT} FROM {_TIME_LEDGER} l",
        ),
        Input(
            "r_inv_psa",
            pa.schema(
                [
                    ("invoice_id", _S),
                    ("line_no", _I),
                    ("version", _I),
                    ("state", _S),
                    ("status", _S),
                    ("project_code", _S),
                    ("customer_id", _S),
                    ("currency", _S),
                    ("issue_date", _D),
                    ("amount", _MONEY),
                    ("landed_at", _TS),
                    ("legal_entity", _S),
                    ("v_amount", _MONEY),
                    ("rule_codes", _S),
                    ("q_messages", _S),
                ]
            ),
            f"""SELECT s.invoice_id, s.line_no, s.version, s.state, s.status, s.project_code,
                   s.customer_id, s.currency, s.issue_date, s.amount, s.landed_at,
                   COALESCE(v.legal_entity, p.legal_entity) AS legal_entity,
                   v.amount AS v_amount, q.rule_codes, q.messages AS q_messages
            FROM stg_invoices s
            LEFT JOIN validated_invoice_lines v ON v.invoice_id = s.invoice_id
                 AND v.line_no = s.line_no AND v.version = s.version
            LEFT JOIN stg_projects p ON p.is_current AND p.row_key = s.project_code
            LEFT JOIN quarantine q ON q.dataset = 'invoices' AND q.row_key = s.row_key
                 AND q.version = s.version AND q.status IN ('open', 'ignored')
            WHERE s.is_current AND s.invoice_id IS NOT NULL
              AND (s.issue_date {in_range} OR s.invoice_id IN ({inv_led_in}))""",
        ),
        Input(
            "r_inv_ledger",
            pa.schema(
                [
                    ("external_id", _S),
                    ("kind", _S),
                    ("invoice_id", _S),
                    ("invoice_version", _I),
                    ("reverses_external_id", _S),
                    ("legal_entity", _S),
                    ("project_code", _S),
                    ("customer_id", _S),
                    ("currency", _S),
                    ("issue_date", _D),
                    ("total_amount", _MONEY),
                    ("line_count", _I),
                    ("state", _S),
                    ("erp_message", _S),
                    ("settled_at", _TS),
                ]
            ),
            f"""SELECT external_id, kind, invoice_id, invoice_version, reverses_external_id,
                   legal_entity, project_code, customer_id, currency, issue_date, total_amount,
                   line_count, state, erp_message, settled_at
            FROM {ledger_rows("invoice_ledger")} l
            WHERE issue_date {in_range} OR invoice_id IN ({inv_psa_in})""",
        ),
        *expense_inputs(in_range),
    ]


def expense_inputs(in_range: str) -> list[Input]:
    """The expenses of the period (current version dated in it, or a ledger line dated in it)
    and their ledger lines: `r_exp_psa`, `r_exp_ledger`."""
    exp_led_in = f"SELECT expense_id FROM expense_ledger WHERE expense_date {in_range}"
    exp_psa_in = (
        "SELECT row_key FROM stg_expenses "
        f"WHERE is_current AND NOT key_missing AND expense_date {in_range}"
    )
    return [
        Input(
            "r_exp_psa",
            pa.schema(
                [
                    ("expense_id", _S),
                    ("psa_version", _I),
                    ("psa_state", _S),
                    ("approval_status", _S),
                    ("legal_entity", _S),
                    ("employee_id", _S),
                    ("project_code", _S),
                    ("category", _S),
                    ("currency", _S),
                    ("expense_date", _D),
                    ("psa_amount", _MONEY),
                    ("psa_rebill_amount", _MONEY),
                    ("reimbursable", _B),
                    ("receipt_ref", _S),
                    ("approved_at", _TS),
                    ("landed_at", _TS),
                    ("rule_codes", _S),
                    ("q_messages", _S),
                ]
            ),
            f"""SELECT s.row_key AS expense_id, s.version AS psa_version, s.state AS psa_state,
                   s.approval_status, COALESCE(v.legal_entity, p.legal_entity) AS legal_entity,
                   s.employee_id, s.project_code,
                   COALESCE(v.category, lower(s.category)) AS category, s.currency,
                   s.expense_date, COALESCE(v.amount, s.amount) AS psa_amount,
                   v.rebill_amount AS psa_rebill_amount, s.reimbursable, s.receipt_ref, s.approved_at, s.landed_at,
                   q.rule_codes, q.messages AS q_messages
            FROM stg_expenses s
            LEFT JOIN validated_expenses v ON v.expense_id = s.row_key AND v.version = s.version
            LEFT JOIN stg_projects p ON p.is_current AND p.row_key = s.project_code
            LEFT JOIN quarantine q ON q.dataset = 'expenses' AND q.row_key = s.row_key
                 AND q.version = s.version AND q.status IN ('open', 'ignored')
            WHERE s.is_current AND NOT s.key_missing
              AND (s.expense_date {in_range} OR s.row_key IN ({exp_led_in}))""",
        ),
        Input(
            "r_exp_ledger",
            pa.schema(
                [
                    ("external_id", _S),
                    ("kind", _S),
                    ("expense_id", _S),
                    ("expense_version", _I),
                    ("reverses_external_id", _S),
                    ("legal_entity", _S),
                    ("employee_id", _S),
                    ("project_code", _S),
                    ("category", _S),
                    ("currency", _S),
                    ("expense_date", _D),
                    ("amount", _MONEY),
                    ("state", _S),
                    ("erp_message", _S),
                    ("settled_at", _TS),
                ]
            ),
            f"""SELECT external_id, kind, expense_id, expense_version, reverses_external_id,
                   legal_entity, employee_id, project_code, category, currency, expense_date,
                   amount, state, erp_message, settled_at
            FROM {ledger_rows("expense_ledger")} l
            WHERE expense_date {in_range} OR expense_id IN ({exp_psa_in})""",
        ),
    ]


def frame_to_arrow(frame: pd.DataFrame | pa.Table | None, schema: pa.Schema) -> pa.Table:
    """An ERP answer as Arrow with `schema`, exactly: a float where a decimal belongs is refused."""
    if frame is None:
        return schema.empty_table()
    if isinstance(frame, pa.Table):
        return _conform(frame.select(schema.names), schema)
    missing = [n for n in schema.names if n not in frame.columns]
    if missing:
        raise ValueError(f"ERP frame lacks columns {missing}")
    for f in schema:
        if pa.types.is_decimal(f.type) and pd.api.types.is_float_dtype(frame[f.name].dtype):
            raise TypeError(f"ERP column {f.name!r} holds floats; money and hours must be Decimal")
    if frame.empty:
        return schema.empty_table()
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


def _same_kind(a: pa.DataType, b: pa.DataType) -> bool:
    if pa.types.is_decimal(a) and pa.types.is_decimal(b):
        return a.scale <= b.scale  # exact in DuckDB whatever the precision; more places: cast
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        return True
    if pa.types.is_string(a) or pa.types.is_large_string(a):
        return pa.types.is_string(b)
    return a == b


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast only the columns whose kind differs: rewriting a million decimals that DuckDB reads
    exactly as they are costs more than the comparison. A float is never accepted as money."""
    for i, f in enumerate(schema):
        t = table.schema.field(f.name).type
        if pa.types.is_decimal(f.type) and pa.types.is_floating(t):
            raise TypeError(f"ERP column {f.name!r} holds floats; money and hours must be Decimal")
        if not _same_kind(t, f.type):
            table = table.set_column(i, f.name, table.column(f.name).cast(f.type))
    return table


def _copy_into(raw: psycopg.Connection, copy_sql: str, write: Callable[[bytes], object]) -> None:
    """Hand the output of a `COPY ... TO STDOUT` to `write`, row by row, from libpq directly.

    psycopg hands out a COPY's rows one at a time, each through a generator and its wait
    loop: about 0.5 µs a row of the reader's core, 0.42 s of 2.48 s for the 851,191 rows of
    `r_valid_ledger` at 1M entries. Here a row already received costs one call; the socket
    is waited on (GIL released) only when libpq has no complete row, as psycopg does."""
    with raw.cursor() as cur, cur.copy(copy_sql):
        pg = raw.pgconn
        while True:
            n, data = pg.get_copy_data(1)  # 1: never block
            if n > 0:
                write(data)
            elif n == 0:  # no complete row received yet
                select.select([pg.socket], [], [])
                pg.consume_input()
            else:  # -1: the COPY ended; its result says how
                break
        # Every result is taken before an error is raised: the connection stays usable.
        failed = []
        while (res := pg.get_result()) is not None:
            if res.status != pq.ExecStatus.COMMAND_OK:
                failed.append(res)
        if failed:
            raise psycopg.errors.error_from_result(failed[0], encoding=raw.info.encoding)


def _copy_out(raw: psycopg.Connection, copy_sql: str) -> io.BytesIO:
    """The whole output of a `COPY ... TO STDOUT` (`_copy_into`), in memory."""
    buf = io.BytesIO()
    _copy_into(raw, copy_sql, buf.write)
    buf.seek(0)
    return buf


def _read_csv_streamed(
    raw: psycopg.Connection, copy_sql: str, read: pacsv.ReadOptions, convert: pacsv.ConvertOptions
) -> pa.Table:
    """A COPY's CSV parsed while it streams in: the rows go through a pipe from a thread of
    their own into pyarrow's reader, which parses each block as it arrives (read whole first,
    the 88 MB of `r_valid_ledger` at 1M entries took 0.54 s more after the COPY). An error on
    either side stops the other: a failed parse closes the pipe, a failed COPY raises."""
    rfd, wfd = os.pipe()
    failed: list[BaseException] = []

    def produce() -> None:
        try:
            with open(wfd, "wb", buffering=1 << 20) as sink:
                _copy_into(raw, copy_sql, sink.write)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the parsing thread
            failed.append(exc)

    producer = threading.Thread(target=produce, name="copy-out", daemon=True)
    producer.start()
    try:
        with open(rfd, "rb") as source:
            table = pacsv.read_csv(source, read_options=read, convert_options=convert)
    finally:
        producer.join()
    if failed and not isinstance(failed[0], BrokenPipeError):
        raise failed[0]
    return table


def _pg_copy_arrow(conn, inp: Input) -> pa.Table:
    """Run the input's SELECT in PostgreSQL and parse its CSV stream with the input's schema."""
    raw = conn.connection.driver_connection
    copy_sql = f"COPY ({inp.select}) TO STDOUT (FORMAT csv, HEADER true)"
    options = pacsv.ConvertOptions(
        column_types={f.name: f.type for f in inp.schema},
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,  # COPY writes NULL unquoted, '' quoted
        true_values=["t"],
        false_values=["f"],
    )
    # One thread: pyarrow's threaded reader cut these streams into 1 MB blocks and took 5-10x
    # as long for an input of 40,000 rows (0.42-0.71 s against 0.07 s, 2 busy cores), and no
    # less for one of 56 MB.
    read = pacsv.ReadOptions(use_threads=False)
    table = _read_csv_streamed(raw, copy_sql, read, options)
    return table.select(inp.schema.names).cast(inp.schema)


def _pg_read(db: StagingDB, inputs: Sequence[Input]) -> list[pa.Table]:
    """The inputs' rows from PostgreSQL, `PG_READERS` statements at a time, each on its own
    connection: PostgreSQL runs a statement on one core (DuckDB uses every core on the same
    work), and the first two inputs (the valid versions beside the ledger, the cube) are most
    of the time. Each statement read in its own snapshot before too (one transaction at READ
    COMMITTED), so running them side by side changes nothing a reader sees."""

    def read(inp: Input) -> pa.Table:
        with db.engine.connect() as conn:
            # The staging side of the fast path is summed and joined in PostgreSQL: in
            # memory (4 MB made the cube of 850,000 versions a sort spilled to disk, 1.9 s).
            conn.exec_driver_sql(f"SET LOCAL work_mem = '{PG_READ_WORK_MEM}'")
            try:
                return _pg_copy_arrow(conn, inp)
            finally:
                conn.rollback()

    with ThreadPoolExecutor(max_workers=PG_READERS) as pool:
        return list(pool.map(read, inputs))


class KeyedInputs:
    """The inputs with a `lazy` form (read only for the entries of a key relation), which
    PostgreSQL staging sends once those entries are known: `load` after the key relation
    exists. A no-op on DuckDB staging, whose lazy views cost nothing until read."""

    def __init__(self) -> None:
        self._load: Callable[[str], None] | None = None

    def load(self, keys: str) -> None:
        """Make the deferred inputs available, for the `entry_id`s of DuckDB relation `keys`."""
        if self._load is not None:
            self._load(keys)
            self._load = None


def _pg_load_keyed(
    db: StagingDB, duck: duckdb.DuckDBPyConnection, inputs: list[Input], keys: str
) -> None:
    """Send the entry ids of `keys` to PostgreSQL, then fetch each input's lazy form for them,
    `PG_READERS` inputs at a time (each on its own connection, with its own copy of the ids:
    one after another they were 0.6 s of one core at 1M entries, the other core idle)."""
    ids = duck.sql(
        f"SELECT DISTINCT entry_id FROM {keys} WHERE entry_id IS NOT NULL"
    ).to_arrow_table()
    buf = io.BytesIO()
    pacsv.write_csv(ids, buf, write_options=pacsv.WriteOptions(include_header=False))

    def read(inp: Input) -> pa.Table:
        with db.engine.connect() as conn:
            try:
                raw = conn.connection.driver_connection
                with raw.cursor() as cur:
                    cur.execute(f"SET LOCAL work_mem = '{PG_READ_WORK_MEM}'")
                    # A few percent of the entries, found by key: index lookups, not a scan of
                    # every version, validated row and ledger line. At the default cost of a
                    # random page (4, a disk's) PostgreSQL scanned the tables whole: 23,800
                    # keys of 1M entries took 0.97 s of its CPU for the three inputs, 0.45 s by
                    # index (staging's pages are cached: a random page costs about what a
                    # sequential one does).
                    cur.execute(f"SET LOCAL random_page_cost = {PG_KEYED_RANDOM_PAGE_COST}")
                    cur.execute(
                        "CREATE TEMP TABLE rc_keys (entry_id TEXT PRIMARY KEY) ON COMMIT DROP"
                    )
                    with cur.copy("COPY rc_keys (entry_id) FROM STDIN (FORMAT csv)") as cp:
                        cp.write(buf.getbuffer())
                    cur.execute("ANALYZE rc_keys")
                keyed = (
                    f"SELECT * FROM ({inp.lazy}) x "
                    "WHERE x.entry_id IN (SELECT entry_id FROM rc_keys)"
                )
                return _pg_copy_arrow(conn, Input(inp.name, inp.schema, keyed))
            finally:
                conn.rollback()

    with ThreadPoolExecutor(max_workers=PG_READERS) as pool:
        tables = list(pool.map(read, inputs))
    for inp, table in zip(inputs, tables, strict=True):
        duck.register(inp.name, table)


@contextmanager
def duck_inputs(
    db: StagingDB,
    inputs: Sequence[Input],
    arrow: dict[str, pa.Table],
    keyed: KeyedInputs | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection holding every `inputs` relation and the `arrow` tables by name
    (with `keyed`, on PostgreSQL, the lazy inputs only once `keyed.load` ran).

    Temporary objects are dropped on exit, so a pooled staging connection stays clean.
    """
    with db.engine.connect() as conn:
        if db.is_duckdb:
            duck = conn.connection.driver_connection
            for inp in inputs:
                duck.execute(f"CREATE OR REPLACE TEMP VIEW {inp.name} AS {inp.lazy or inp.select}")
            owned = None
        else:
            owned = duck = duckdb.connect()
            deferred = [i for i in inputs if keyed is not None and i.lazy]
            now = [i for i in inputs if i not in deferred]
            for inp, table in zip(now, _pg_read(db, now), strict=True):
                duck.register(inp.name, table)
            if keyed is not None:
                keyed._load = lambda keys: _pg_load_keyed(db, duck, deferred, keys)
        for name, table in arrow.items():
            duck.register(name, table)
        try:
            yield duck
        finally:
            for name in arrow:
                duck.unregister(name)
            if owned is not None:
                owned.close()
            else:
                for inp in inputs:
                    duck.execute(f"DROP VIEW IF EXISTS {inp.name}")
