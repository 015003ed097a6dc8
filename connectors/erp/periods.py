"""Accounting-period dates shared by the ERP adapters and the posting plan (no adapter imports)."""

from __future__ import annotations

import calendar
from datetime import date


def month_end(d: date) -> date:
    """The last day of `d`'s month: the end of its monthly accounting period."""
    return d.replace(day=calendar.monthrange(d.year, d.month)[1])
