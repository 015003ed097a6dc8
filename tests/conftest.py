"""Shared fixtures: staging databases on DuckDB and on the local PostgreSQL server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from staging_models.db import StagingDB

pytest_plugins = [
    "tests.support.tryton_fixtures",
    "tests.support.sftp_fixtures",
    "tests.support.smtp_server",
]

PG_URL = os.environ.get("STAGEPOST_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_available() -> bool:
    try:
        with sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://")).connect():
            return True
    except sa.exc.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_available() -> bool:
    return _pg_available()


def _pg_schema_db(pg_available: bool) -> Iterator[StagingDB]:
    """A StagingDB in a throwaway PostgreSQL schema (so tests never see each other's tables)."""
    if not pg_available:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {PG_URL} is not reachable; CI requires it")
        pytest.skip(f"PostgreSQL at {PG_URL} is not reachable on this machine")
    schema = f"sp_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    db = StagingDB(f"{PG_URL}?options=-csearch_path%3D{schema}")
    db.init_schema()
    try:
        yield db
    finally:
        db.engine.dispose()
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def duck_db(tmp_path: Path) -> Iterator[StagingDB]:
    db = StagingDB(f"duckdb:///{tmp_path / 'staging.duckdb'}")
    db.init_schema()
    yield db
    db.engine.dispose()


@pytest.fixture
def pg_db(pg_available: bool) -> Iterator[StagingDB]:
    yield from _pg_schema_db(pg_available)


@pytest.fixture(params=["duckdb", "postgresql"])
def any_db(request, tmp_path: Path, pg_available: bool) -> Iterator[StagingDB]:
    """The same test on the embedded default and on PostgreSQL."""
    if request.param == "duckdb":
        db = StagingDB(f"duckdb:///{tmp_path / 'staging.duckdb'}")
        db.init_schema()
        yield db
        db.engine.dispose()
    else:
        yield from _pg_schema_db(pg_available)
