"""The grammar of a full export's range (`STAGEPOST_FULL_EXPORT_RANGE`, or dates in a file
name): read by the settings model to check the setting and by the full-export check itself."""

from __future__ import annotations

import re
from datetime import date

_DATE = r"\d{4}-\d{2}-\d{2}"
_NAME_RANGE = re.compile(rf"({_DATE})[^0-9]{{1,4}}({_DATE})")


class FullExportError(ValueError):
    """A full export's range or an operator's decision is not acceptable; says why."""


def parse_range(text: str) -> tuple[date, date]:
    """`2026-11-01..2026-11-30` (or `/`): first and last work date, both included."""
    m = re.fullmatch(rf"\s*({_DATE})\s*(?:\.\.|/)\s*({_DATE})\s*", text)
    if not m:
        raise FullExportError(
            f"full export range {text!r}: write FROM..TO, e.g. 2026-11-01..2026-11-30"
        )
    return _ordered(date.fromisoformat(m[1]), date.fromisoformat(m[2]), text)


def range_in_name(file_name: str) -> tuple[date, date] | None:
    """The range a file name declares (`..._2026-11-01_2026-11-30.csv`), if it declares one."""
    m = _NAME_RANGE.search(file_name)
    if not m:
        return None
    return _ordered(date.fromisoformat(m[1]), date.fromisoformat(m[2]), file_name)


def _ordered(lo: date, hi: date, where: str) -> tuple[date, date]:
    if lo > hi:
        raise FullExportError(f"full export range in {where!r} ends ({hi}) before it starts ({lo})")
    return lo, hi
