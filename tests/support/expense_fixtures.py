"""Expense fixtures, loaded with `pytest_plugins = ["tests.support.expense_fixtures"]`: the
test world (master data landed through the real pipeline) and a SQL interface ERP, on DuckDB
files and on PostgreSQL schemas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.erp.sql_interface import SqlInterfaceTarget
from staging_models.db import StagingDB
from tests.support.expense_world import ExpenseEnv
from tests.support.posting_helpers import pg_schema
from tests.support.staging_helpers import World


@pytest.fixture
def expense_env(any_db: StagingDB, tmp_path: Path, pg_available: bool) -> Iterator[ExpenseEnv]:
    world = World(any_db, tmp_path).master()
    if any_db.is_duckdb:
        erp = SqlInterfaceTarget(f"duckdb:///{tmp_path / 'erp.duckdb'}")
        yield ExpenseEnv(world, erp)
        erp.close()
        return
    with pg_schema(pg_available) as url:
        erp = SqlInterfaceTarget(url)
        yield ExpenseEnv(world, erp)
        erp.close()
