"""Alembic schema upgrades (staging and SQL-interface ERP tables) on DuckDB and PostgreSQL.

A database of the first release's schema (revision 0001 / erp0001: frozen DDL of git 9736e9d)
is filled with rows in every table, upgraded, and must keep every row as it was; the upgraded
schema must equal a fresh one's (so a table change without a revision fails here).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from connectors.erp.sql_interface import SqlInterfaceTarget
from staging_models.db import SchemaVersionError, StagingDB
from staging_models.migrations import ERP, STAGING, Track, main, state
from staging_models.schema import SCHEMA_VERSION
from tests.support.posting_helpers import pg_schema

ROOT = Path(__file__).resolve().parent.parent
#: The staging track's newest revision (revisions after 0002 add tables only).
HEAD = STAGING.head()


@contextmanager
def _empty(kind: str, path: Path, pg_available: bool) -> Iterator[str]:
    """The URL of an empty database (PostgreSQL: a throwaway schema)."""
    if kind == "duckdb":
        yield f"duckdb:///{path / f'db-{uuid.uuid4().hex[:6]}.duckdb'}"
        return
    with pg_schema(pg_available, "sp_mig") as url:  # the throwaway schema the posting tests use
        yield url


@pytest.fixture(params=["duckdb", "postgresql"])
def empty_url(request, tmp_path: Path, pg_available: bool) -> Iterator[str]:
    with _empty(request.param, tmp_path, pg_available) as url:
        yield url


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))


def _build(url: str, track: Track, revision: str, *, pre_alembic: bool) -> None:
    """A database at `revision`, the way that release left it (`pre_alembic`: no version table,
    as the first release made it)."""
    engine = _engine(url)
    with engine.begin() as conn:
        command.upgrade(track.config(conn), revision)
        if pre_alembic:
            conn.exec_driver_sql(f"DROP TABLE {track.version_table}")
    engine.dispose()


def _columns(conn: sa.Connection) -> dict[str, dict[str, tuple]]:
    """table -> column -> (data type, nullable, numeric precision, scale), from
    information_schema (both backends; PostgreSQL's data type alone hides a decimal's digits)."""
    rows = conn.execute(
        sa.text(
            "SELECT table_name, column_name, data_type, is_nullable, numeric_precision, "
            "numeric_scale FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name NOT LIKE '%alembic_version'"
        )
    ).fetchall()
    out: dict[str, dict[str, tuple]] = {}
    for t, c, ty, n, p, s in rows:
        out.setdefault(t, {})[c] = (ty.lower(), n, p, s)
    return out


def _keys(conn: sa.Connection) -> dict[str, list[str]]:
    """table -> its primary key's columns, in key order."""
    rows = conn.execute(
        sa.text(
            "SELECT k.table_name, k.column_name FROM information_schema.key_column_usage k "
            "JOIN information_schema.table_constraints c "
            "  ON c.constraint_name = k.constraint_name AND c.table_name = k.table_name "
            " AND c.table_schema = k.table_schema "
            "WHERE c.constraint_type = 'PRIMARY KEY' AND k.table_schema = current_schema() "
            "AND k.table_name NOT LIKE '%alembic_version' "
            "ORDER BY k.table_name, k.ordinal_position"
        )
    ).fetchall()
    out: dict[str, list[str]] = {}
    for t, c in rows:
        out.setdefault(t, []).append(c)
    return out


def _shape(url: str) -> tuple:
    """Columns, primary keys, indexes and storage options of the database at `url`."""
    engine = _engine(url)
    with engine.connect() as conn:
        shape = _columns(conn), _keys(conn), _indexes(conn), _storage(conn)
    engine.dispose()
    return shape


def _storage(conn: sa.Connection) -> dict[str, list[str]]:
    """table -> its storage options, e.g. `fillfactor=50` (PostgreSQL; DuckDB has none)."""
    if conn.dialect.name != "postgresql":
        return {}
    rows = conn.execute(
        sa.text(
            "SELECT c.relname, c.reloptions FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.reloptions IS NOT NULL"
        )
    ).fetchall()
    return {t: sorted(o) for t, o in rows}


def _indexes(conn: sa.Connection) -> set[str]:
    """The index names of the schema (PostgreSQL; DuckDB: none are made, primary keys aside)."""
    if conn.dialect.name == "postgresql":
        sql = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        sql += " AND tablename NOT LIKE '%alembic_version'"
    else:
        sql = "SELECT index_name FROM duckdb_indexes() WHERE schema_name = current_schema()"
    return {r[0] for r in conn.execute(sa.text(sql))}


def _value(data_type: str, col: str, i: int):
    """A typed value for row `i` (distinct per row, so composite keys stay unique)."""
    if data_type.startswith(("numeric", "decimal")):
        return Decimal("1.25") * i  # exact; fits every NUMERIC(p, s) of the schema
    if data_type in ("integer", "bigint"):
        return i
    if data_type == "boolean":
        return i % 2 == 0
    if data_type == "date":
        return date(2026, 11, i)
    if data_type.startswith("timestamp"):
        return datetime(2026, 11, i, 9, 30, 15, 123456, tzinfo=UTC)
    return f"{col} {i} ü'€"  # text: quotes and non-ASCII survive too


def _fill(url: str, rows: int = 3) -> dict[str, list[dict]]:
    """`rows` rows in every table (schema_meta: beside its version row); every table's rows."""
    engine = _engine(url)
    with engine.begin() as conn:
        cols = _columns(conn)
        for table, cs in cols.items():
            names = sorted(cs)
            sql = sa.text(
                f"INSERT INTO {table} ({', '.join(names)}) "
                f"VALUES ({', '.join(':' + n for n in names)})"
            )
            params = [{n: _value(cs[n][0], n, i) for n in names} for i in range(1, rows + 1)]
            conn.execute(sql, params)
        snap = _snapshot(conn, {t: sorted(cs) for t, cs in cols.items()})
    engine.dispose()
    return snap


def _snapshot(conn: sa.Connection, cols: dict[str, list[str]]) -> dict[str, list[dict]]:
    """Every row of each table (the given columns) as a dict, in a stable order."""
    out = {}
    for table, names in cols.items():
        rows = conn.execute(sa.text(f"SELECT {', '.join(names)} FROM {table}")).mappings()
        out[table] = sorted((dict(r) for r in rows), key=repr)
    return out


def _after(url: str, before: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The same tables and columns as `before`, read again."""
    engine = _engine(url)
    with engine.connect() as conn:
        snap = _snapshot(conn, {t: sorted(rows[0]) for t, rows in before.items()})
    engine.dispose()
    return snap


def test_release1_staging_database_upgrades_without_changing_a_row(
    empty_url: str, tmp_path: Path, capsys
) -> None:
    _build(empty_url, STAGING, "0001", pre_alembic=True)
    before = _fill(empty_url)
    assert len(before) == 24 and all(
        len(rows) == 3 for t, rows in before.items() if t != "schema_meta"
    )

    with pytest.raises(
        SchemaVersionError,
        match=rf"0001 \(made before Alembic\).*needs {STAGING.head()}.*stagepost-upgrade",
    ):
        StagingDB(empty_url).init_schema()

    assert main(["--staging-url", empty_url, "--no-erp"]) == 0
    out = capsys.readouterr().out
    assert "its tables are revision 0001" in out and "upgrade 0001 -> 0002" in out
    assert f"at head {STAGING.head()}" in out

    after = _after(empty_url, before)
    meta = before.pop("schema_meta"), after.pop("schema_meta")
    assert after == before  # every row of every release-1 table, value for value
    # schema_meta: only its version moved (release 1 refuses the upgraded database)
    assert [r for r in meta[1] if r["key"] != "schema_version"] == [
        r for r in meta[0] if r["key"] != "schema_version"
    ]
    assert {"key": "schema_version", "value": str(SCHEMA_VERSION)} in meta[1]

    db = StagingDB(empty_url)
    db.init_schema()  # at head: opens
    assert db.scalar("SELECT count(*) FROM posting_windows WHERE message IS NULL") == 3
    assert db.scalar("SELECT count(*) FROM full_exports") == 0
    assert db.scalar(f"SELECT version_num FROM {STAGING.version_table}") == STAGING.head()
    db.engine.dispose()


def test_upgraded_schema_equals_a_fresh_one(
    any_db: StagingDB, tmp_path: Path, pg_available: bool
) -> None:
    """Upgrading from the base reaches exactly the tables and columns a fresh database gets:
    a table or column added to the metadata without a revision fails here."""
    fresh = _shape(any_db.url)
    with _empty(any_db.dialect, tmp_path, pg_available) as url:
        _build(url, STAGING, "head", pre_alembic=False)
        assert _shape(url) == fresh


def test_erp_tables_derived_from_the_documents_equal_the_revisions(
    empty_url: str, tmp_path: Path, pg_available: bool
) -> None:
    """The SQL-interface ERP tables a fresh target creates, their document columns derived from
    `connectors.erp.documents`, are exactly what the ERP revisions build: columns, types with
    a decimal's precision and scale, nullability, primary keys and indexes."""
    SqlInterfaceTarget(empty_url).close()
    fresh = _shape(empty_url)
    assert {"erp_time_lines", "erp_invoices", "erp_invoice_lines"} <= set(fresh[0])
    with _empty(empty_url.split(":")[0], tmp_path, pg_available) as url:
        _build(url, ERP, "head", pre_alembic=False)
        assert _shape(url) == fresh


def test_fresh_database_is_at_head_and_reopens(any_db: StagingDB) -> None:
    assert any_db.scalar(f"SELECT version_num FROM {STAGING.version_table}") == STAGING.head()
    assert any_db.scalar("SELECT value FROM schema_meta WHERE key = 'schema_version'") == str(
        SCHEMA_VERSION
    )
    any_db.engine.dispose()
    again = StagingDB(any_db.url)
    again.init_schema()
    with again.engine.connect() as conn:
        assert state(conn, STAGING).kind == "head"
    again.engine.dispose()


def test_database_at_an_older_revision_is_refused_naming_the_command(empty_url: str) -> None:
    _build(empty_url, STAGING, "0001", pre_alembic=False)
    db = StagingDB(empty_url)
    with pytest.raises(SchemaVersionError) as e:
        db.init_schema()
    assert f"at schema revision 0001, this stagepost needs {STAGING.head()}" in str(e.value)
    assert "./dev upgrade" in str(e.value) and "stagepost-upgrade" in str(e.value)
    db.engine.dispose()


def test_newer_database_is_refused(any_db: StagingDB) -> None:
    with any_db.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {STAGING.version_table} SET version_num = '0099'")
    any_db.engine.dispose()
    db = StagingDB(any_db.url)
    with pytest.raises(SchemaVersionError, match="revision 0099, which this stagepost does not"):
        db.init_schema()
    assert main(["--staging-url", any_db.url, "--no-erp"]) == 2
    db.engine.dispose()


def test_pre_alembic_database_of_an_unknown_version_is_refused(empty_url: str) -> None:
    _build(empty_url, STAGING, "0001", pre_alembic=True)
    engine = _engine(empty_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE schema_meta SET value = '7' WHERE key = 'schema_version'")
    engine.dispose()
    db = StagingDB(empty_url)
    with pytest.raises(SchemaVersionError, match="newer stagepost"):
        db.init_schema()
    db.engine.dispose()


def test_release1_erp_tables_are_adopted_without_changing_a_row(empty_url: str, capsys) -> None:
    """A pre-Alembic ERP database (release 1's tables) is stamped erp0001 and upgraded to the
    head by the command, keeping every row; the target then works on it."""
    _build(empty_url, ERP, "erp0001", pre_alembic=True)
    before = _fill(empty_url)
    assert len(before) == 8
    assert (
        main(["--staging-url", f"duckdb:///{uuid.uuid4()}/none.duckdb", "--erp-url", empty_url])
        == 0
    )
    out = capsys.readouterr().out
    assert "none.duckdb: does not exist" in out
    assert "its tables are revision erp0001" in out
    assert "upgrade erp0001 -> erp0002_payments" in out and f"at head {ERP.head()}" in out
    assert _after(empty_url, before) == before

    target = SqlInterfaceTarget(empty_url)  # opens at head
    posted = _value("text", "external_id", 1)
    assert set(target.existing_external_ids([posted, "nope"])) == {posted}
    target.close()
    engine = _engine(empty_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT version_num FROM {ERP.version_table}").scalar() == (
            ERP.head()
        )
    engine.dispose()


def test_erp_target_refuses_older_tables_until_upgraded_and_unknown_ones(empty_url: str) -> None:
    """Release 1's ERP tables lack the later revisions' tables and columns (payments, project
    set-up, expense lines): the target refuses them, naming the upgrade command, and opens once they are
    upgraded; an unknown revision is refused."""
    _build(empty_url, ERP, "erp0001", pre_alembic=True)
    with pytest.raises(SchemaVersionError, match=r"erp0001 \(made before Alembic\).*dev upgrade"):
        SqlInterfaceTarget(empty_url)
    none = f"duckdb:///{uuid.uuid4()}/none.duckdb"
    assert main(["--staging-url", none, "--erp-url", empty_url]) == 0
    SqlInterfaceTarget(empty_url).close()
    engine = _engine(empty_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {ERP.version_table} SET version_num = 'erp0099'")
    engine.dispose()
    with pytest.raises(SchemaVersionError, match="erp database .* revision erp0099"):
        SqlInterfaceTarget(empty_url)


def test_fresh_erp_tables_are_at_head(empty_url: str) -> None:
    SqlInterfaceTarget(empty_url).close()
    engine = _engine(empty_url)
    with engine.connect() as conn:
        assert state(conn, ERP).kind == "head"
    engine.dispose()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEPOST_")}
    env.update(PYTHONPATH=str(ROOT), STAGEPOST_DATA_DIR=str(tmp_path / "data"), **extra)
    return env


@pytest.mark.slow
def test_console_script_upgrades_and_checks(tmp_path: Path) -> None:
    """The `[project.scripts]` entry, run as its installed wrapper runs it."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, fn = scripts["stagepost-upgrade"].split(":")
    (tmp_path / "data").mkdir()
    url = f"duckdb:///{tmp_path / 'data' / 'staging.duckdb'}"
    _build(url, STAGING, "0001", pre_alembic=True)
    wrapper = f"import sys; from {module} import {fn}; sys.argv[0] = 'stagepost-upgrade'; sys.exit({fn}())"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", wrapper, *args],
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )

    check = run("--check")
    assert (
        check.returncode == 1
        and "staging" in check.stdout
        and "behind (0001, no version table yet)" in check.stdout
    )
    done = run()
    assert done.returncode == 0, done.stderr
    assert "upgrade 0001 -> 0002: today's changes" in done.stdout
    assert "erp_interface.duckdb: does not exist" in done.stdout
    assert run("--check").returncode == 0


@pytest.mark.slow
def test_dev_upgrade_runs_the_command(tmp_path: Path) -> None:
    """`./dev upgrade`, with an already installed venv (its stamp matches the lock) standing in
    for the project's own, so the test never pip-installs."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    py = venv / "bin" / "python"
    py.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    py.chmod(0o755)
    stamp = hashlib.sha256(
        (ROOT / "requirements/app.lock").read_bytes() + (ROOT / "pyproject.toml").read_bytes()
    ).hexdigest()
    (venv / ".stagepost-installed-app").write_text(stamp + "\n")
    (tmp_path / "data").mkdir()
    _build(f"duckdb:///{tmp_path / 'data' / 'staging.duckdb'}", STAGING, "0001", pre_alembic=False)
    env = _env(tmp_path, STAGEPOST_VENV=str(venv), PYTHON=sys.executable)
    done = subprocess.run(
        [str(ROOT / "dev"), "upgrade"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "upgrade 0001 -> 0002" in done.stdout and f"at head {STAGING.head()}" in done.stdout
    history = subprocess.run(
        [str(ROOT / "dev"), "upgrade", "--history"], env=env, capture_output=True, text=True
    )
    assert "0002 (after 0001)" in history.stdout and "erp erp0001" in history.stdout


RELEASE_1 = "9736e9d"


@pytest.fixture(scope="module")
def release1_tree(tmp_path_factory) -> Path:
    """The first release's source (git 9736e9d), to build databases with its own code."""
    tree = tmp_path_factory.mktemp("release1")
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", RELEASE_1, "staging_models", "connectors"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"no git history with {RELEASE_1} here (a packaged copy): nothing to compare")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


@pytest.mark.slow
def test_base_revisions_are_what_release_1_made(
    release1_tree: Path, empty_url: str, tmp_path: Path, pg_available: bool, capsys
) -> None:
    """A database made by release 1's own code has exactly the tables and columns of the
    frozen base revisions, and the command upgrades it (staging and ERP)."""
    with _empty(empty_url.split(":")[0], tmp_path, pg_available) as erp_url:
        code = (
            "import sys; from staging_models.db import StagingDB; "
            "from connectors.erp.sql_interface import SqlInterfaceTarget; "
            "StagingDB(sys.argv[1]).init_schema(); SqlInterfaceTarget(sys.argv[2]).close()"
        )
        subprocess.run(
            [sys.executable, "-c", code, empty_url, erp_url],
            env={**_env(tmp_path), "PYTHONPATH": str(release1_tree)},
            cwd=release1_tree,  # `-c` puts the working directory first on sys.path
            check=True,
            timeout=120,
        )
        made = {}
        for url in (empty_url, erp_url):
            engine = _engine(url)
            with engine.connect() as conn:
                made[url] = _columns(conn), _indexes(conn)
            engine.dispose()
        for track, rev, url in ((STAGING, "0001", empty_url), (ERP, "erp0001", erp_url)):
            with _empty(empty_url.split(":")[0], tmp_path, pg_available) as frozen:
                _build(frozen, track, rev, pre_alembic=True)
                engine = _engine(frozen)
                with engine.connect() as conn:
                    assert (_columns(conn), _indexes(conn)) == made[url], track.name
                engine.dispose()
        assert main(["--staging-url", empty_url, "--erp-url", erp_url]) == 0
        out = capsys.readouterr().out
        assert "upgrade 0001 -> 0002" in out and f"at head {ERP.head()}" in out
        StagingDB(empty_url).init_schema()
        SqlInterfaceTarget(erp_url).close()


@pytest.mark.slow
def test_alembic_scripts_ship_with_the_package(tmp_path: Path) -> None:
    """setuptools' build of the package (what a wheel holds) has every revision and frozen
    .sql file, and the command lists the revisions from it alone."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        pkg = pattern.rstrip("*")
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    lib = tmp_path / "lib"
    built = subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py"]
        + ["--build-lib", str(lib)],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    tracks = ("staging_models/alembic", "connectors/erp/alembic")
    shipped = {p.relative_to(lib).as_posix() for t in tracks for p in (lib / t).rglob("*")}
    wanted = {
        p.relative_to(ROOT).as_posix()
        for t in tracks
        for p in (ROOT / t).rglob("*")
        if p.suffix in (".py", ".sql")
    }
    assert any(w.endswith("erp/alembic/release1.sql") for w in wanted)
    assert shipped >= wanted
    history = subprocess.run(
        [sys.executable, "-m", "staging_models.migrations", "--history"],
        env={**_env(tmp_path), "PYTHONPATH": str(lib)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert history.returncode == 0, history.stderr
    assert (
        str(lib)
        in subprocess.run(
            [sys.executable, "-c", "import staging_models.migrations as m; print(m.__file__)"],
            env={**_env(tmp_path), "PYTHONPATH": str(lib)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert "0002 (after 0001)" in history.stdout and "erp erp0001" in history.stdout


def test_demo_on_an_old_database_is_one_line_naming_the_command(
    tmp_path: Path, monkeypatch
) -> None:
    from commands.demo import SettingError, check_settings

    url = f"duckdb:///{tmp_path / 'staging.duckdb'}"
    _build(url, STAGING, "0001", pre_alembic=True)
    monkeypatch.setenv("STAGEPOST_STAGING_URL", url)
    monkeypatch.setenv("STAGEPOST_DATA_DIR", str(tmp_path))
    with pytest.raises(SettingError) as e:
        check_settings()
    assert "\n" not in str(e.value)
    assert "revision 0001 (made before Alembic)" in str(e.value) and "./dev upgrade" in str(e.value)
