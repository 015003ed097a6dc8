"""Breaches (open exceptions past their due date) in the desk's key figures, on DuckDB and
PostgreSQL: the desk world has five open groups, routed on 2026-11-20 with due dates two or
three business days later (one day for format rules)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from desk import kpis
from staging_models.db import StagingDB
from staging_models.desk_breaches import breaches, totals
from tests.support.desk_world import NOW, build


def test_overdue_exceptions_are_counted(
    any_db: StagingDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(any_db, tmp_path, monkeypatch)
    assert totals(breaches(any_db, NOW.date())) == (5, 0)
    later = (NOW + timedelta(days=10)).date()
    frame = breaches(any_db, later)
    assert totals(frame) == (5, 5)
    assert totals(frame, "US01") == (5, 5) and totals(frame, "DE01") == (0, 0)
    figures = kpis.figures(any_db, today=later)
    assert (figures["open"], figures["overdue"]) == (5, 5)
    # Due dates: the keyless row (format rule, one business day) Monday 2026-11-23, the
    # master-data rules (two) Tuesday, the range rule (three) Wednesday: on a due date the
    # exception is not yet a breach, the day after it is.
    by_day = {
        day: totals(breaches(any_db, (NOW + timedelta(days=day)).date()))[1] for day in (3, 4, 5, 6)
    }
    assert by_day == {3: 0, 4: 1, 5: 4, 6: 5}
