"""How figures are written for people: exact decimals, per currency, one rate format.

Money and hours are `Decimal` end to end; a float here is a bug upstream, so it is refused
rather than rounded. Amounts are written with thousands separators and every digit they
have (`13,376.25`, `4,408,470.00`), the way the workbooks' number format shows them, and
always beside their currency: amounts of different currencies are never added. Rates are
percentages with two decimals, rounded half up (`99.27%`), in the UI and the workbooks alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal

_PERCENT = Decimal("0.01")


def decimal_text(value: Decimal | int | None) -> str:
    """`value` with every digit it has and thousands separators; '' for none."""
    if value is None:
        return ""
    if isinstance(value, float):
        raise TypeError(f"{value!r} is a float: money and hours must be Decimal")
    return f"{Decimal(value):,f}"


def money(amount: Decimal | None, currency: str | None) -> str:
    """An amount beside its currency: `13,376.25 EUR`."""
    text = decimal_text(amount)
    return f"{text} {currency}" if text and currency else text


def amounts_by_currency(pairs: Iterable[tuple[str | None, Decimal | None]]) -> dict[str, str]:
    """Sum amounts per currency (never across), written exactly: {'EUR': '13,376.25'}."""
    sums: dict[str, Decimal] = {}
    for currency, amount in pairs:
        if amount is None:
            continue
        if isinstance(amount, float):
            raise TypeError(f"{amount!r} is a float: money must be Decimal")
        key = currency or "(no currency)"
        sums[key] = sums.get(key, Decimal(0)) + Decimal(amount)
    return {c: decimal_text(sums[c]) for c in sorted(sums)}


def rate(numerator: int, denominator: int) -> str | None:
    """`numerator / denominator` as a percentage with two decimals (`99.27%`); None if 0/0."""
    if not denominator:
        return None
    pct = (Decimal(int(numerator)) * 100 / Decimal(int(denominator))).quantize(
        _PERCENT, ROUND_HALF_UP
    )
    return f"{pct}%"


def text_map(values: Mapping[str, Decimal | None]) -> dict[str, str]:
    """A mapping of decimals as exact text (for JSON metadata)."""
    return {k: decimal_text(v) for k, v in values.items()}
