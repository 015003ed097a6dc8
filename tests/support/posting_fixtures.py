"""Posting fixtures, loaded with `pytest_plugins = ["tests.support.posting_fixtures"]`: a staging
database and a SQL interface ERP side by side, on DuckDB files and on PostgreSQL schemas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.erp.sql_interface import SqlInterfaceTarget
from staging_models.db import StagingDB
from tests.support.posting_helpers import PostingEnv, pg_schema, with_master_data


def _env(kind: str, tmp_path: Path, pg_available: bool) -> Iterator[PostingEnv]:
    from tests.conftest import _pg_schema_db

    if kind == "duckdb":
        db = StagingDB(f"duckdb:///{tmp_path / 'staging.duckdb'}")
        db.init_schema()
        url = f"duckdb:///{tmp_path / 'erp.duckdb'}"
        erp = SqlInterfaceTarget(url)
        with_master_data(erp)
        yield PostingEnv(kind, db, erp, url, tmp_path)
        erp.close()
        db.engine.dispose()
        return
    with pg_schema(pg_available) as url:
        for db in _pg_schema_db(pg_available):
            erp = SqlInterfaceTarget(url)
            with_master_data(erp)
            yield PostingEnv(kind, db, erp, url, tmp_path)
            erp.close()


@pytest.fixture(params=["duckdb", "postgresql"])
def posting_env(request, tmp_path: Path, pg_available: bool) -> Iterator[PostingEnv]:
    """The same posting test on DuckDB files and on PostgreSQL schemas."""
    yield from _env(request.param, tmp_path, pg_available)


@pytest.fixture
def duck_env(tmp_path: Path, pg_available: bool) -> Iterator[PostingEnv]:
    yield from _env("duckdb", tmp_path, pg_available)
