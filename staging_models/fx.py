"""Exchange rates (`fx_rates`, issue 21): which rate converts an amount, and the conversion.

Set-based SQL for DuckDB and PostgreSQL alike; nothing here loops over rows.

**Which rate applies** (docs/intercompany.md):
- the *reference date* is the entry's work date (`STAGEPOST_FX_RATE_DATE=work_date`, the
  default) or the last day of its month (`month_end`);
- the latest valid rate dated on or before the reference date and at most
  `STAGEPOST_FX_MAX_AGE_DAYS` (default 7) days before it is taken (0: that day's rate only), so a
  weekend or holiday takes the last business day's rate, and a rate never comes from the future;
- the pair as given (`from` -> `to`) first; where none is within reach, the inverse pair
  (`to` -> `from`) is used, *dividing* by its rate (never a rounded reciprocal); on one date the
  direct pair wins;
- the rate, its date, its source and whether it was inverted are always carried along with what
  it converted, so the workbook and the ledger show them; a conversion that finds no rate is
  never made at 1: the entry is quarantined (`TE_FX_RATE_MISSING`), a report line is shown as
  having no rate.

**Conversion** is exact: amounts are computed on integers (DuckDB divides decimals as floats)
and rounded half up to the cent once.
"""

from __future__ import annotations

from typing import Literal

RateDate = Literal["work_date", "month_end"]

#: Every valid, current rate in both directions; `inverse` marks the mirrored one.
VALID_RATES = """
    SELECT rate_date, from_currency, to_currency, rate, source, FALSE AS inverse
    FROM stg_fx_rates WHERE is_current AND state = 'valid'
    UNION ALL
    SELECT rate_date, to_currency, from_currency, rate, source, TRUE
    FROM stg_fx_rates WHERE is_current AND state = 'valid'
"""


def month_end_sql(dialect: str, day: str) -> str:
    """The last day of `day`'s month, as a DATE."""
    if dialect == "duckdb":
        return f"CAST(last_day({day}) AS DATE)"
    return f"CAST(date_trunc('month', {day}) + INTERVAL '1 month' - INTERVAL '1 day' AS DATE)"


def reference_date_sql(dialect: str, day: str, rule: RateDate) -> str:
    """The date whose rate converts an amount dated `day`."""
    if rule == "month_end":
        return month_end_sql(dialect, day)
    if rule == "work_date":
        return f"CAST({day} AS DATE)"
    raise ValueError(f"unknown FX rate date rule {rule!r}")


def lookup_sql(needs: str, keys: tuple[str, ...], max_age_days: int) -> str:
    """One row per row of `needs` (a table or subquery with `keys`, `from_currency`,
    `to_currency`, `ref_date`) that has a rate within reach: its keys, `rate`, `rate_date`,
    `source`, `inverse`. Needs without a rate have no row (LEFT JOIN it)."""
    age = int(max_age_days)
    k = ", ".join(f"n.{c}" for c in keys)
    return f"""
        SELECT {", ".join(keys)}, rate, rate_date, source, inverse FROM (
            SELECT {k}, f.rate, f.rate_date, f.source, f.inverse,
                   ROW_NUMBER() OVER (PARTITION BY {k}
                                      ORDER BY f.rate_date DESC, f.inverse) AS fx_rn
            FROM {needs} n
            JOIN ({VALID_RATES}) f
              ON f.from_currency = n.from_currency AND f.to_currency = n.to_currency
             AND f.rate_date <= n.ref_date AND f.rate_date >= n.ref_date - {age}
        ) fx WHERE fx_rn = 1
    """


def _div(dialect: str, num: str, den: str) -> str:
    if dialect == "duckdb":
        return f"(CAST({num} AS HUGEINT) // CAST({den} AS HUGEINT))"
    return f"div(CAST({num} AS NUMERIC), CAST({den} AS NUMERIC))"


def _int(dialect: str, expr: str) -> str:
    return f"CAST({expr} AS {'HUGEINT' if dialect == 'duckdb' else 'NUMERIC'})"


def cents_sql(dialect: str, hours: str, rate: str) -> str:
    """hours (4 decimals) x rate (4 decimals), rounded half up to the cent, exactly (a
    positive product; the caller negates for a reversal)."""
    hr = f"{_int(dialect, f'{hours} * 10000')} * {_int(dialect, f'{rate} * 10000')}"
    cents = _div(dialect, f"{hr} * 2 + 1000000", "2000000")
    return f"CAST({cents} AS DECIMAL(18,0)) * CAST(0.01 AS DECIMAL(3,2))"


def converted_cents_sql(dialect: str, hours: str, rate: str, fx: str, inverse: str) -> str:
    """hours x rate converted at `fx` (8 decimals): multiplied, or divided when `inverse`;
    rounded half up to the cent once, exactly. (hr: hours x rate x 10^8; f: fx x 10^8.)"""
    hr = f"({_int(dialect, f'{hours} * 10000')} * {_int(dialect, f'{rate} * 10000')})"
    f = _int(dialect, f"{fx} * 100000000")
    # direct: cents = hr x f / 10^14; inverse: cents = hr x 100 / f (both half up)
    direct = _div(dialect, f"{hr} * {f} * 2 + 100000000000000", "200000000000000")
    inv = _div(dialect, f"{hr} * 200 + {f}", f"{f} * 2")
    cents = f"CASE WHEN {inverse} THEN {inv} ELSE {direct} END"
    return f"CAST({cents} AS DECIMAL(18,0)) * CAST(0.01 AS DECIMAL(3,2))"


def convert_amount_sql(dialect: str, amount: str, fx: str, inverse: str) -> str:
    """An amount (2 decimals, any sign) converted at `fx`: multiplied, or divided when
    `inverse`; rounded half away from zero to the cent, exactly (report totals)."""
    a = _int(dialect, f"abs({amount}) * 100")
    f = _int(dialect, f"{fx} * 100000000")
    direct = _div(dialect, f"{a} * {f} * 2 + 100000000", "200000000")
    inv = _div(dialect, f"{a} * 200000000 + {f}", f"{f} * 2")
    cents = f"CASE WHEN {inverse} THEN {inv} ELSE {direct} END"
    sign = f"CASE WHEN {amount} < 0 THEN -1 ELSE 1 END"
    return f"CAST({sign} * {cents} AS DECIMAL(18,0)) * CAST(0.01 AS DECIMAL(3,2))"
