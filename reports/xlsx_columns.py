"""Column planning for Excel workbooks (reconciliation, posting previews): one type per column.

openpyxl's per-cell type inference is the slowest part of a write-only dump, and
it turns any string starting with "=" into a formula. Deciding the kind of each
column once, from its dtype (and one vectorised scan for object columns), and
converting whole chunks at a time to ready Python values (numbers, Excel date
serials, sanitised strings) leaves the row loop with nothing to decide.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

Column = pd.Series | pa.ChunkedArray

# Excel stores at most 32,767 characters per cell and no C0 control characters but TAB, LF, CR.
MAX_CELL_CHARS = 32_767
_ILLEGAL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_ILLEGAL_BUT_NUL = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f]")
# First characters that make a spreadsheet treat typed text as a formula (OWASP CSV injection).
RISKY_FIRST_CHARS = frozenset("=+-@\t\r")
# Integers beyond this lose digits as Excel doubles (15 significant digits): keep them as text.
_MAX_EXACT_INT = 10**15
_EXCEL_EPOCH = np.datetime64("1899-12-30", "us")
_US_PER_DAY = 86_400_000_000


class Kind(StrEnum):
    """How a column is written: Excel cell type plus number format."""

    TEXT = "text"
    INT = "int"
    MONEY = "money"
    HOURS = "hours"
    RATE = "rate"
    DATE = "date"
    DATETIME = "datetime"
    BOOL = "bool"


NUMBER_FORMATS: dict[Kind, str | None] = {
    Kind.TEXT: None,
    Kind.INT: "0",
    Kind.MONEY: "#,##0.00",
    Kind.HOURS: "0.00",
    Kind.RATE: "0.00######",  # an exchange rate to its 8 decimals, never shown rounded
    Kind.DATE: "yyyy-mm-dd",
    Kind.DATETIME: "yyyy-mm-dd hh:mm",
    Kind.BOOL: None,
}
DATA_TYPES: dict[Kind, str] = {
    Kind.TEXT: "s",
    Kind.BOOL: "b",
    **{k: "n" for k in (Kind.INT, Kind.MONEY, Kind.HOURS, Kind.RATE, Kind.DATE, Kind.DATETIME)},
}


class RiskyText(str):
    """A string that a spreadsheet would treat as a formula if typed; written with quotePrefix."""

    __slots__ = ()


@dataclass
class TextIssues:
    """Counts of string values changed to fit Excel, so the summary can say so."""

    cut: int = 0
    control_chars: int = 0


@dataclass
class ColumnPlan:
    """Kind, number format and chunk converter of one column, decided once per sheet."""

    name: str
    kind: Kind
    convert: Callable[[Column], list[Any]]
    issues: TextIssues = field(default_factory=TextIssues)

    @property
    def number_format(self) -> str | None:
        return NUMBER_FORMATS[self.kind]

    @property
    def data_type(self) -> str:
        return DATA_TYPES[self.kind]


def is_hours_name(name: str) -> bool:
    """Hours columns are named so (`hours`, `approved_hours`, `hours_diff`); the rest is money."""
    return "hour" in name.casefold()


def is_fx_rate_name(name: str) -> bool:
    """Exchange-rate columns are named so (`fx_rate`, `ic_fx_rate`, `exchange_rate`)."""
    folded = name.casefold()
    return "fx_rate" in folded or "exchange_rate" in folded


def slice_column(col: Column, start: int, stop: int) -> Column:
    if isinstance(col, pa.ChunkedArray):
        return col.slice(start, stop - start)
    return col.iloc[start:stop]


# --------------------------------------------------------------------------- converters


def _floats_to_list(values: np.ndarray) -> list[Any]:
    """float64 array to Python floats, NaN/inf to None (openpyxl would write an empty <v>)."""
    bad = ~np.isfinite(values)
    if bad.any():
        out = values.astype(object)
        out[bad] = None
        return out.tolist()
    return values.tolist()


def _pd_float(s: pd.Series) -> list[Any]:
    # Decimal -> float is what openpyxl's "%.16g" does per cell anyway: the text in the file
    # is identical, and converting here, vectorised, leaves nothing to do while writing.
    return _floats_to_list(s.to_numpy(dtype=float, na_value=np.nan))


def _pd_int(s: pd.Series) -> list[Any]:
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iu":  # numpy ints: no nulls
        return s.tolist()
    return s.to_numpy(dtype=object, na_value=None).tolist()


def _pd_bool(s: pd.Series) -> list[Any]:
    return s.to_numpy(dtype=object, na_value=None).tolist()


def _to_datetime64(s: pd.Series) -> np.ndarray:
    """Naive datetime64[us]; tz-aware values keep their wall-clock time (Excel has no zones)."""
    if s.dtype == object:
        s = pd.to_datetime(s)
    if getattr(s.dtype, "tz", None) is not None:
        s = s.dt.tz_localize(None)
    return s.to_numpy(dtype="datetime64[us]")


def _serials(s: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Excel 1900-system whole days, day fractions and a null mask, as openpyxl's to_excel."""
    values = _to_datetime64(s)
    null = np.isnat(values)
    us = (values - _EXCEL_EPOCH).astype("int64")
    days = us // _US_PER_DAY
    # Excel's phantom 1900-02-29: serials up to 60 are one day lower than the real count.
    fix = ((days > 0) & (days <= 60)).astype("int64")
    return days - fix, (us - days * _US_PER_DAY) / _US_PER_DAY, null


def _pd_date(s: pd.Series) -> list[Any]:
    days, _, null = _serials(s)
    if null.any():
        out = days.astype(object)
        out[null] = None
        return out.tolist()
    return days.tolist()


def _pd_datetime(s: pd.Series) -> list[Any]:
    days, frac, null = _serials(s)
    serial = days + frac
    serial[null] = np.nan
    return _floats_to_list(serial)


def _pd_timedelta_hours(s: pd.Series) -> list[Any]:
    return _floats_to_list(s.dt.total_seconds().to_numpy(dtype=float, na_value=np.nan) / 3600)


def _pd_text_values(s: pd.Series, stringify: bool) -> list[Any]:
    values = s.to_numpy(dtype=object, na_value=None).tolist()
    if stringify:
        values = [v if v is None or v.__class__ is str else str(v) for v in values]
    return values


def sanitise_text(values: list[Any], issues: TextIssues) -> list[Any]:
    """Make strings storable and safe: no control characters, cut at Excel's limit (counted),
    and mark formula-like text as RiskyText. Checks run on one joined string (C speed);
    only a chunk that has a problem pays a per-value pass.
    """
    parts = list(filter(None, values))
    if not parts:
        return values
    joined = "\x00".join(parts)
    if joined.count("\x00") != len(parts) - 1 or _ILLEGAL_BUT_NUL.search(joined):
        fixed = []
        for v in values:
            if v is not None and _ILLEGAL_CHARS.search(v):
                issues.control_chars += 1
                v = _ILLEGAL_CHARS.sub("\ufffd", v)
            fixed.append(v)
        values = fixed
        parts = list(filter(None, values))
        joined = "\x00".join(parts)
    if max(map(len, parts)) > MAX_CELL_CHARS:
        issues.cut += sum(1 for v in parts if len(v) > MAX_CELL_CHARS)
        values = [v[:MAX_CELL_CHARS] if v and len(v) > MAX_CELL_CHARS else v for v in values]
        parts = list(filter(None, values))
        joined = "\x00".join(parts)
    if joined[0] in RISKY_FIRST_CHARS or any("\x00" + c in joined for c in RISKY_FIRST_CHARS):
        values = [RiskyText(v) if v and v[0] in RISKY_FIRST_CHARS else v for v in values]
    return values


# --------------------------------------------------------------------------- planning


def _numeric_kind(name: str) -> Kind:
    if is_fx_rate_name(name):
        return Kind.RATE
    return Kind.HOURS if is_hours_name(name) else Kind.MONEY


def _all_numbers(s: pd.Series) -> bool:
    """Rare path (object column of mixed types): are all values int/float/Decimal, no bools?"""
    return all(isinstance(v, int | float | Decimal) and not isinstance(v, bool) for v in s.dropna())


def _midnight_only(s: pd.Series) -> bool:
    """datetime64 loses date-vs-timestamp; a column that is all midnights is shown as dates."""
    values = _to_datetime64(s)
    values = values[~np.isnat(values)]
    return bool(((values - values.astype("datetime64[D]")) == np.timedelta64(0, "us")).all())


def _big_ints(s: pd.Series) -> bool:
    if len(s) == 0 or s.isna().all():
        return False
    return bool(max(abs(int(s.min())), abs(int(s.max()))) >= _MAX_EXACT_INT)


def _text_plan(name: str, stringify: bool) -> ColumnPlan:
    plan = ColumnPlan(name, Kind.TEXT, lambda s: [])

    def convert(s: pd.Series) -> list[Any]:
        return sanitise_text(_pd_text_values(s, stringify), plan.issues)

    plan.convert = convert
    return plan


def _plan(name: str, kind: Kind, convert: Callable[[pd.Series], list[Any]]) -> ColumnPlan:
    return ColumnPlan(name, kind, convert)


def plan_pandas_column(name: str, s: pd.Series) -> ColumnPlan:
    """Decide a pandas column's kind from its dtype; object columns by one infer_dtype scan."""
    dtype = s.dtype
    if isinstance(dtype, pd.ArrowDtype):
        return plan_arrow_column(name, pa.chunked_array([pa.array(s)]))
    if isinstance(dtype, pd.CategoricalDtype):
        inner = plan_pandas_column(name, s.astype(object))
        convert = inner.convert
        inner.convert = lambda part: convert(part.astype(object))
        return inner
    if pd.api.types.is_bool_dtype(dtype):
        return _plan(name, Kind.BOOL, _pd_bool)
    if pd.api.types.is_integer_dtype(dtype):
        if _big_ints(s):
            return _text_plan(name, stringify=True)
        return _plan(name, Kind.INT, _pd_int)
    if pd.api.types.is_float_dtype(dtype):
        return _plan(name, _numeric_kind(name), _pd_float)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        if _midnight_only(s):
            return _plan(name, Kind.DATE, _pd_date)
        return _plan(name, Kind.DATETIME, _pd_datetime)
    if pd.api.types.is_timedelta64_dtype(dtype):
        return _plan(name, Kind.HOURS, _pd_timedelta_hours)
    is_object = pd.api.types.is_object_dtype(dtype)
    if pd.api.types.is_string_dtype(dtype) and not is_object:
        return _text_plan(name, stringify=False)
    if not is_object:
        return _text_plan(name, stringify=True)
    return _plan_object_column(name, s)


def _plan_object_column(name: str, s: pd.Series) -> ColumnPlan:
    inferred = pd.api.types.infer_dtype(s, skipna=True)
    if inferred in ("string", "empty"):
        return _text_plan(name, stringify=False)
    if inferred == "decimal" or inferred in ("floating", "mixed-integer-float"):
        return _plan(name, _numeric_kind(name), _pd_float)
    if inferred == "integer":
        if _big_ints(s):
            return _text_plan(name, stringify=True)
        return _plan(name, Kind.INT, _pd_int)
    if inferred == "boolean":
        return _plan(name, Kind.BOOL, _pd_bool)
    if inferred == "date":
        return _plan(name, Kind.DATE, _pd_date)
    if inferred in ("datetime", "datetime64"):
        return _plan(name, Kind.DATETIME, _pd_datetime)
    if inferred in ("timedelta", "timedelta64"):
        return _plan(name, Kind.HOURS, lambda part: _pd_timedelta_hours(pd.to_timedelta(part)))
    if inferred in ("mixed", "mixed-integer") and _all_numbers(s):
        return _plan(name, _numeric_kind(name), _pd_float)
    # One Excel type per column: anything else (str mixed with numbers, ...) is shown as text.
    return _text_plan(name, stringify=True)


def plan_arrow_column(name: str, col: pa.ChunkedArray) -> ColumnPlan:
    """Decide a pyarrow column's kind from its type; chunks convert through small casts."""
    t = col.type
    if pa.types.is_dictionary(t):
        inner = plan_arrow_column(name, col.cast(t.value_type))
        convert = inner.convert
        inner.convert = lambda part: convert(part.cast(t.value_type))
        return inner
    if pa.types.is_decimal(t) or pa.types.is_floating(t):
        kind = _numeric_kind(name)
        return _plan(
            name,
            kind,
            lambda part: _floats_to_list(
                part.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(float)
            ),
        )
    if pa.types.is_integer(t):
        mm = pc.min_max(col).as_py()  # no conversion of the whole column
        if mm["min"] is not None and max(abs(mm["min"]), abs(mm["max"])) >= _MAX_EXACT_INT:
            plan = _text_plan(name, stringify=True)
            convert = plan.convert
            plan.convert = lambda part: convert(part.to_pandas())
            return plan
        return _plan(name, Kind.INT, lambda part: part.to_pylist())
    if pa.types.is_boolean(t):
        return _plan(name, Kind.BOOL, lambda part: part.to_pylist())
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        plan = ColumnPlan(name, Kind.TEXT, lambda part: [])
        plan.convert = lambda part: sanitise_text(part.to_pylist(), plan.issues)
        return plan
    if pa.types.is_null(t):
        return _plan(name, Kind.TEXT, lambda part: [None] * len(part))
    # Temporal and anything else: through pandas per chunk (dates, timestamps, durations).
    inner = plan_pandas_column(name, col.to_pandas(date_as_object=False))
    convert = inner.convert
    inner.convert = lambda part: convert(part.to_pandas(date_as_object=False))
    return inner


def plan_column(name: str, col: Column) -> ColumnPlan:
    if isinstance(col, pa.ChunkedArray):
        return plan_arrow_column(name, col)
    return plan_pandas_column(name, col)


def text_cell(ws: WriteOnlyWorksheet, text: str, font: Font | None = None) -> WriteOnlyCell:
    """A string cell that is text even if it looks like a formula (public openpyxl API)."""
    text = sanitise_text([str(text)], TextIssues())[0]
    cell = WriteOnlyCell(ws, value=text)
    cell.data_type = "s"  # openpyxl makes "=..." a formula otherwise
    if text and text[0] in RISKY_FIRST_CHARS:
        cell.quotePrefix = True  # Excel keeps it text even when the cell is edited
    if font is not None:
        cell.font = font
    return cell
