"""Metadata tables for the Dagster UI, with every figure exact.

`DataFrame.to_markdown` hands cells to tabulate, which parses anything that looks like a
number and prints it with `%g`: 13376.25 became 13376.2 and 4408470.00 became 4.40847e+06.
Here every cell is written as text first (decimals by `staging_models.figures`) and number
parsing is off, so the UI shows what the ledger holds.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pandas as pd
from dagster import MetadataValue

from staging_models.figures import decimal_text


def cell_text(value: object) -> str:
    """One cell as text: decimals exact, missing values empty, never a float's rounding."""
    if value is None or (
        not isinstance(value, str | bytes) and pd.api.types.is_scalar(value) and pd.isna(value)
    ):
        return ""
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, float):
        # A count column pandas widened to float because one row has none: still a count.
        if value.is_integer():
            return str(int(value))
        raise TypeError(f"{value!r} is a float: a metadata table holds exact figures only")
    if isinstance(value, datetime | date | pd.Timestamp):
        return value.isoformat()
    return str(value)


def markdown_text(frame: pd.DataFrame) -> str:
    """The frame as a markdown table whose cells are exactly `cell_text` of the values."""
    text = frame.astype(object).map(cell_text) if len(frame) else frame.astype(str)
    return text.to_markdown(index=False, disable_numparse=True)


def md_table(frame: pd.DataFrame) -> MetadataValue:
    return MetadataValue.md(markdown_text(frame))
