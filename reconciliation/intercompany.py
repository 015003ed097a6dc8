"""Intercompany pairs and group-currency totals in the reconciliation (docs/intercompany.md).

- **Intercompany**: per intercompany entry and side (payable in the project's entity,
  receivable in the employee's), what staging expects (the current version's figures in
  `validated_time_entries`) against what the ERP's intercompany journals hold net (posts
  minus reversals, on the debited account); and per legal entity and currency, the ERP's
  intercompany debits against its credits (each entity's side balances).
- **Currency totals**: the period's validated time per legal entity and transaction currency,
  and, with `STAGEPOST_GROUP_CURRENCY`, converted into it line by line at the rate the
  `STAGEPOST_FX_RATE_DATE` rule finds (`staging_models.fx`), with the span of rate dates used.
  A line without a rate is counted and listed (`FX missing`), never converted at 1 or dropped.

Set-based SQL in the staging database (the ERP's journal lines are loaded into a temporary
table first), on DuckDB and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import pyarrow as pa

from config.settings import current
from connectors.erp.base import ErpError, ErpTarget
from connectors.sql import load_temp, read_frame
from staging_models import fx
from staging_models.db import StagingDB

IC_TYPES = ("ic_payable", "ic_receivable")
TIES, DIFFERS, NOT_POSTED, NOT_EXPECTED = "ties", "differs", "not posted", "not expected"
BALANCED, UNBALANCED = "balanced", "unbalanced"
NO_RATE = "no rate"

INTERCOMPANY_HEADERS: dict[str, str] = {
    "status": "Status",
    "entry_id": "Entry",
    "side": "Side",
    "legal_entity": "Legal entity",
    "ic_currency": "Currency",
    "expected_amount": "Expected (staging)",
    "erp_amount": "Posted (ERP, net)",
    "ic_difference": "Difference (staging - ERP)",
    "ic_rate_date": "Rate date",
    "ic_fx_rate": "Exchange rate",
}
IC_BALANCE_HEADERS: dict[str, str] = {
    "balance_status": "Status",
    "legal_entity": "Legal entity",
    "ic_currency": "Currency",
    "ic_debit": "Debits",
    "ic_credit": "Credits",
    "ic_difference": "Difference (staging - ERP)",
}
CURRENCY_TOTAL_HEADERS: dict[str, str] = {
    "legal_entity": "Legal entity",
    "transaction_currency": "Transaction currency",
    "entries": "Entries",
    "transaction_amount": "Amount (transaction currency)",
    "group_currency": "Group currency",
    "converted_entries": "Entries converted",
    "group_amount": "Amount (group currency)",
    "first_rate_date": "First rate date",
    "last_rate_date": "Last rate date",
    "entries_without_rate": "Entries without a rate",
    "amount_without_rate": "Amount without a rate (transaction currency)",
}
FX_MISSING_HEADERS: dict[str, str] = {
    "fx_status": "Status",
    "entry_id": "Entry",
    "legal_entity": "Legal entity",
    "work_date": "Work date",
    "transaction_currency": "Transaction currency",
    "transaction_amount": "Amount (transaction currency)",
    "group_currency": "Group currency",
    "fx_reference_date": "Rate wanted for",
}

_ERP_SCHEMA = pa.schema(
    [
        ("journal_id", pa.string()),
        ("journal_type", pa.string()),
        ("legal_entity", pa.string()),
        ("currency", pa.string()),
        ("line_role", pa.string()),
        ("debit", pa.decimal128(18, 2)),
        ("credit", pa.decimal128(18, 2)),
    ]
)


def intercompany_reconciliation(
    db: StagingDB, erp: ErpTarget
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The Intercompany sheet (one row per entry and side), the balance per legal entity and
    currency, and notes. Empty frames when there is nothing intercompany."""
    has_ic = db.scalar(
        f"""SELECT CASE WHEN EXISTS (SELECT 1 FROM journal_ledger
                                     WHERE journal_type IN {IC_TYPES!r})
                          OR EXISTS (SELECT 1 FROM validated_time_entries
                                     WHERE ic_legal_entity IS NOT NULL) THEN 1 ELSE 0 END"""
    )
    empty = (
        pd.DataFrame(columns=list(INTERCOMPANY_HEADERS)),
        pd.DataFrame(columns=list(IC_BALANCE_HEADERS)),
    )
    if not has_ic:
        return *empty, []
    try:
        lines = erp.read_journal_lines(date(1900, 1, 1), date(2999, 12, 31))
    except ErpError as e:
        return *empty, [f"Intercompany pairs not compared with the ERP: {e}"]
    lines = lines[lines["journal_type"].isin(IC_TYPES)] if len(lines) else lines
    frame = lines.reindex(columns=_ERP_SCHEMA.names)
    with db.begin() as conn:
        load_temp(conn, "rc_ic_erp", frame, _ERP_SCHEMA)
        detail = read_frame(
            conn,
            """
            WITH want AS (
                SELECT entry_id, 'payable' AS side, legal_entity, ic_pay_currency AS ic_currency,
                       ic_pay_amount AS amount, ic_fx_rate_date, ic_fx_rate
                FROM validated_time_entries WHERE ic_legal_entity IS NOT NULL
                UNION ALL
                SELECT entry_id, 'receivable', ic_legal_entity, ic_rec_currency, ic_rec_amount,
                       NULL, NULL
                FROM validated_time_entries WHERE ic_legal_entity IS NOT NULL
            ),
            have AS (
                SELECT journal_id AS entry_id,
                       CASE WHEN journal_type = 'ic_payable' THEN 'payable'
                            ELSE 'receivable' END AS side,
                       MIN(legal_entity) AS legal_entity, MIN(currency) AS ic_currency,
                       SUM(debit - credit) AS amount
                FROM rc_ic_erp WHERE line_role IN ('ic_cost', 'ic_receivable')
                GROUP BY journal_id, journal_type
            )
            SELECT CASE WHEN h.entry_id IS NULL OR h.amount = 0 THEN
                            CASE WHEN w.entry_id IS NULL THEN 'ties' ELSE 'not posted' END
                        WHEN w.entry_id IS NULL THEN 'not expected'
                        WHEN w.amount = h.amount AND w.ic_currency = h.ic_currency THEN 'ties'
                        ELSE 'differs' END AS status,
                   coalesce(w.entry_id, h.entry_id) AS entry_id,
                   coalesce(w.side, h.side) AS side,
                   coalesce(w.legal_entity, h.legal_entity) AS legal_entity,
                   coalesce(w.ic_currency, h.ic_currency) AS ic_currency,
                   coalesce(w.amount, 0) AS expected_amount,
                   coalesce(h.amount, 0) AS erp_amount,
                   coalesce(w.amount, 0) - coalesce(h.amount, 0) AS ic_difference,
                   w.ic_fx_rate_date AS ic_rate_date, w.ic_fx_rate
            FROM want w FULL OUTER JOIN have h ON h.entry_id = w.entry_id AND h.side = w.side
            ORDER BY 2, 3
            """,
        )
        balance = read_frame(
            conn,
            """
            SELECT CASE WHEN SUM(debit) = SUM(credit) THEN 'balanced' ELSE 'unbalanced' END
                       AS balance_status,
                   legal_entity, currency AS ic_currency, SUM(debit) AS ic_debit,
                   SUM(credit) AS ic_credit, SUM(debit) - SUM(credit) AS ic_difference
            FROM rc_ic_erp GROUP BY legal_entity, currency ORDER BY legal_entity, currency
            """,
        )
        conn.exec_driver_sql("DROP TABLE IF EXISTS rc_ic_erp")
    # Entries whose pair is reversed to nothing and not expected any more are settled: left out
    detail = detail[~((detail["status"] == TIES) & (detail["expected_amount"] == 0))]
    notes = []
    bad = int(detail["status"].isin([DIFFERS, NOT_EXPECTED]).sum())
    waiting = int((detail["status"] == NOT_POSTED).sum())
    if bad:
        notes.append(f"Intercompany: {bad} entry sides differ from the ERP (Intercompany sheet).")
    if waiting:
        notes.append(
            f"Intercompany: {waiting} entry sides not posted yet (their customer line is not "
            "confirmed, or the pair waits for a window covering both legal entities)."
        )
    n = int((balance["balance_status"] == UNBALANCED).sum())
    if n:
        notes.append(f"Intercompany: {n} legal entity and currency sides do not balance.")
    return detail.reset_index(drop=True), balance, notes


def currency_totals(
    db: StagingDB, date_from: date, date_to: date, group_currency: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Validated time of `date_from`..`date_to` per legal entity and transaction currency and,
    with a group currency, converted into it where rates exist (the rate-date span shown);
    the lines without a rate; notes."""
    settings = current()
    group = (group_currency if group_currency is not None else settings.group_currency) or ""
    dialect = "duckdb" if db.is_duckdb else "postgresql"
    params = {"f": date_from, "t": date_to, "g": group}
    if not group:
        totals = db.query_df(
            """SELECT legal_entity, currency AS transaction_currency, COUNT(*) AS entries,
                      SUM(amount) AS transaction_amount
               FROM validated_time_entries WHERE work_date BETWEEN :f AND :t
               GROUP BY legal_entity, currency ORDER BY legal_entity, currency""",
            params,
        )
        return totals, pd.DataFrame(columns=list(FX_MISSING_HEADERS)), []
    ref = fx.reference_date_sql(dialect, "v.work_date", settings.fx_rate_date)
    lookup = fx.lookup_sql("fx_need", ("entry_id",), settings.fx_max_age_days)
    convert = fx.convert_amount_sql(dialect, "v.amount", "r.rate", "r.inverse")
    base = f"""
        WITH fx_need AS (
            SELECT v.entry_id, v.currency AS from_currency, CAST(:g AS VARCHAR) AS to_currency,
                   {ref} AS ref_date
            FROM validated_time_entries v
            WHERE v.work_date BETWEEN :f AND :t AND v.currency <> :g
        ),
        r AS ({lookup}),
        c AS (
            SELECT v.entry_id, v.legal_entity, v.currency, v.amount, v.work_date, n.ref_date,
                   CASE WHEN v.currency = :g THEN v.amount
                        WHEN r.entry_id IS NOT NULL THEN {convert} END AS group_amount,
                   r.rate_date
            FROM validated_time_entries v
            LEFT JOIN fx_need n ON n.entry_id = v.entry_id
            LEFT JOIN r ON r.entry_id = v.entry_id
            WHERE v.work_date BETWEEN :f AND :t
        )
    """
    totals = db.query_df(
        f"""{base}
            SELECT legal_entity, currency AS transaction_currency, COUNT(*) AS entries,
                   SUM(amount) AS transaction_amount, CAST(:g AS VARCHAR) AS group_currency,
                   COUNT(group_amount) AS converted_entries, SUM(group_amount) AS group_amount,
                   MIN(rate_date) AS first_rate_date, MAX(rate_date) AS last_rate_date,
                   COUNT(*) - COUNT(group_amount) AS entries_without_rate,
                   coalesce(SUM(CASE WHEN group_amount IS NULL THEN amount END), 0)
                       AS amount_without_rate
            FROM c GROUP BY legal_entity, currency ORDER BY legal_entity, currency""",
        params,
    )
    missing = db.query_df(
        f"""{base}
            SELECT 'no rate' AS fx_status, entry_id, legal_entity, work_date,
                   currency AS transaction_currency, amount AS transaction_amount,
                   CAST(:g AS VARCHAR) AS group_currency, ref_date AS fx_reference_date
            FROM c WHERE group_amount IS NULL ORDER BY work_date, entry_id""",
        params,
    )
    notes = []
    if len(missing):
        notes.append(
            f"Group currency {group}: {len(missing)} entries have no exchange rate and are "
            "left out of the group-currency totals (FX missing sheet); their amounts stay in "
            "their own currency."
        )
    return totals, missing, notes
