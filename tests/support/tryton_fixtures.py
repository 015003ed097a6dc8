"""pytest plugin: a real Tryton 8.2 for the tests, built once, copied per test.

- `tryton_template` (session): an SQLite database with `project_invoice` and
  `stagepost` activated, a company, chart of accounts, fiscal year and a service
  product. Built with trytond-admin and Tryton's own test helpers (~30 s) and cached
  on disk under a key of the installed module versions and our module's source, so
  later sessions reuse it (`STAGEPOST_TRYTON_CACHE`, default /tmp/stagepost-tryton-cache).
- `tryton_server` (function): a copy of the template served by `trytond` on a free
  loopback port, in its own process group, killed at teardown.
- `tryton_target` (function): a `TrytonTarget` logged into that server.
- `tryton_host` (module): one `trytond` for a whole test module, serving a fresh copy
  of the template per test (`TrytonHost.fresh_target()`): a test then pays Tryton's
  pool load for its database (~1 s), not a server start.

Our module reaches trytond through a `trytond.modules` entry point; so that the tests
need no installed project, the fixtures write a tiny `stagepost-0.0.0.dist-info`
into the cache and put it on the subprocesses' PYTHONPATH.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import importlib.metadata
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from connectors.erp.tryton import TrytonTarget

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "connectors" / "erp" / "trytond_stagepost"
BUILD_SCRIPT = Path(__file__).with_name("tryton_build.py")
DB_NAME = "stagepost"
ADMIN_PASSWORD = "stagepost-admin"
FISCAL_YEAR = 2026
LEGAL_ENTITY = "SPC-US"
COMPANY_ID = 1
MODULES = ("project_invoice", "stagepost")
_TRYTON_DISTS = (
    "trytond",
    "trytond_company",
    "trytond_party",
    "trytond_account",
    "trytond_account_invoice",
    "trytond_product",
    "trytond_project",
    "trytond_timesheet",
    "trytond_project_invoice",
    "proteus",
)


def _cache_key() -> str:
    """Changes when Tryton, our module or the build script changes."""
    digest = hashlib.sha256()
    for dist in _TRYTON_DISTS:
        digest.update(f"{dist}={importlib.metadata.version(dist)};".encode())
    for path in sorted(
        [
            *MODULE_DIR.rglob("*.py"),
            *MODULE_DIR.rglob("*.xml"),
            *MODULE_DIR.rglob("*.cfg"),
            BUILD_SCRIPT,
        ]
    ):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(f"{FISCAL_YEAR}{MODULES}".encode())
    return digest.hexdigest()[:16]


def _bin(name: str) -> str:
    """A console script of the running interpreter's environment."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


@dataclass(frozen=True)
class TrytonTemplate:
    """The built template database and what a server needs to serve a copy."""

    path: Path
    entry_points: Path

    def env(self) -> dict[str, str]:
        paths = [str(self.entry_points), str(ROOT)]
        if os.environ.get("PYTHONPATH"):
            paths.append(os.environ["PYTHONPATH"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRYTOND_")}
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env


def _write_entry_point(directory: Path) -> None:
    dist = directory / "stagepost-0.0.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: stagepost\nVersion: 0.0.0\n")
    (dist / "entry_points.txt").write_text(
        "[trytond.modules]\nstagepost = connectors.erp.trytond_stagepost\n"
    )


def _write_config(path: Path, db_dir: Path, port: int | None = None) -> None:
    text = f"[database]\nuri = sqlite://\npath = {db_dir}\n"
    if port is not None:
        text += f"[web]\nlisten = 127.0.0.1:{port}\n"
    text += "[session]\nmax_attempt = 1000\n"
    path.write_text(text)


def _run(cmd: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("ab") as out:
        done = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({done.returncode}):\n{tail}")


def build_template(cache_root: Path) -> TrytonTemplate:
    """Build (or reuse) the template; a file lock keeps parallel sessions from racing."""
    cache = cache_root / _cache_key()
    cache.mkdir(parents=True, exist_ok=True)
    template = TrytonTemplate(path=cache / f"{DB_NAME}.sqlite", entry_points=cache / "ep")
    _write_entry_point(template.entry_points)
    with (cache / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if template.path.exists():
            return template
        work = cache / f"build-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        config = work / "trytond.conf"
        _write_config(config, work)
        (work / f"{DB_NAME}.sqlite").touch()
        (work / "password").write_text(ADMIN_PASSWORD)
        env = template.env() | {"TRYTONPASSFILE": str(work / "password")}
        log = work / "build.log"
        started = time.perf_counter()
        _run(
            [
                _bin("trytond-admin"),
                "-c",
                str(config),
                "-d",
                DB_NAME,
                "--email",
                "admin@example.com",
                "-u",
                *MODULES,
                "--activate-dependencies",
            ],
            env,
            log,
        )
        _run(
            [
                sys.executable,
                "-m",
                "tests.support.tryton_build",
                str(config),
                DB_NAME,
                str(FISCAL_YEAR),
            ],
            env | {"PYTHONWARNINGS": "ignore"},
            log,
        )
        db = work / f"{DB_NAME}.sqlite"
        with contextlib.closing(sqlite3.connect(db)) as conn:
            # One self-contained file: copies need no -wal/-shm companions.
            conn.execute("PRAGMA journal_mode=DELETE")
        tmp = cache / f"{DB_NAME}.sqlite.tmp"
        shutil.copyfile(db, tmp)
        os.replace(tmp, template.path)
        shutil.rmtree(work, ignore_errors=True)
        print(f"\nTryton template built in {time.perf_counter() - started:.1f} s: {template.path}")
    return template


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class TrytonServer:
    """A running trytond serving one copy of the template."""

    url: str
    database: str
    password: str
    process: subprocess.Popen[bytes]
    log: Path
    started_in: float = 0.0
    legal_entities: dict[str, int] = field(default_factory=lambda: {LEGAL_ENTITY: COMPANY_ID})

    def stop(self) -> None:
        """Kill the server's process group and wait for it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)

    def target(self, **kwargs: Any) -> TrytonTarget:
        """A target logged into this server as admin (kwargs go to `TrytonTarget`)."""
        from connectors.erp.tryton import TrytonTarget

        return TrytonTarget(
            self.url,
            self.database,
            "admin",
            self.password,
            legal_entities=self.legal_entities,
            **kwargs,
        )


def start_server(
    template: TrytonTemplate,
    directory: Path,
    timeout: float = 60.0,
    spare_databases: int = 0,
) -> TrytonServer:
    """Copy the template into `directory` and serve it; return once it answers.

    `spare_databases` more copies (`<DB_NAME>_1`, ...) are made before the server
    starts: trytond caches its database list, so copies made later stay invisible.
    """
    started = time.perf_counter()
    db_dir = directory / "db"
    db_dir.mkdir(parents=True, exist_ok=True)
    for name in [DB_NAME, *spare_names(spare_databases)]:
        shutil.copyfile(template.path, db_dir / f"{name}.sqlite")
    port = _free_port()
    config = directory / "trytond.conf"
    _write_config(config, db_dir, port)
    log = directory / "trytond.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [_bin("trytond"), "-c", str(config), "-d", DB_NAME],
            env=template.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = TrytonServer(
        url=f"http://127.0.0.1:{port}",
        database=DB_NAME,
        password=ADMIN_PASSWORD,
        process=process,
        log=log,
    )
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"trytond exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"trytond did not listen within {timeout:g} s") from None
            time.sleep(0.05)
    server.started_in = time.perf_counter() - started
    return server


def spare_names(count: int) -> list[str]:
    return [f"{DB_NAME}_{i}" for i in range(1, count + 1)]


@dataclass
class TrytonHost:
    """One trytond serving spare copies of the template, handed out one per test."""

    server: TrytonServer
    spare: list[str]

    def fresh_database(self) -> str:
        """The name of a served database no test has used, its pool loaded."""
        if not self.spare:
            raise RuntimeError("tryton_host ran out of spare databases (two per test at most)")
        database = self.spare.pop(0)
        self._load_pool(database)
        return database

    def fresh_target(self, **kwargs: Any) -> TrytonTarget:
        """A target on a database no test has used (kwargs go to `TrytonTarget`)."""
        from connectors.erp.tryton import TrytonTarget

        database = self.fresh_database()
        return TrytonTarget(
            self.server.url,
            database,
            "admin",
            self.server.password,
            legal_entities=self.server.legal_entities,
            **kwargs,
        )

    def _load_pool(self, database: str) -> None:
        """Make trytond load the database's pool.

        Its login does not (it finds an empty pool for a database it was not started
        with and fails on `res.user`); the `/<db>/r/` route, which `tryton://` links
        reach, loads it and then answers 404, which is expected here.
        """
        try:
            # Direct, as TrytonRpc connects: a stray HTTP_PROXY must not see loopback calls.
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"{self.server.url}/{database}/r/stagepost", timeout=60
            )
        except urllib.error.HTTPError as answer:
            if answer.code != 404:
                raise


@pytest.fixture(scope="session")
def tryton_template() -> TrytonTemplate:
    try:
        for dist in _TRYTON_DISTS:
            importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError as missing:
        pytest.skip(
            f"Tryton is an optional dependency (extra 'tryton'): {missing} is not installed"
        )
    cache_root = Path(os.environ.get("STAGEPOST_TRYTON_CACHE", "/tmp/stagepost-tryton-cache"))
    return build_template(cache_root)


@pytest.fixture
def tryton_server(tryton_template: TrytonTemplate, tmp_path: Path) -> Iterator[TrytonServer]:
    server = start_server(tryton_template, tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tryton_target(tryton_server: TrytonServer) -> TrytonTarget:
    return tryton_server.target()


@pytest.fixture(scope="module")
def tryton_host(
    request: pytest.FixtureRequest,
    tryton_template: TrytonTemplate,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TrytonHost]:
    """One server per module, with a spare database for every selected test using it
    (and two more for a test that needs a second one)."""
    users = [
        item
        for item in request.session.items
        if item.module is request.module and "tryton_host" in getattr(item, "fixturenames", ())
    ]
    server = start_server(
        tryton_template, tmp_path_factory.mktemp("tryton-host"), spare_databases=len(users) + 2
    )
    try:
        yield TrytonHost(server, spare_names(len(users) + 2))
    finally:
        server.stop()


def work_duration(rpc: Any, external_id: str) -> dt.timedelta:
    """Tryton's own timesheet total of a project work (task), found by its external ID."""
    (work,) = rpc.model(
        "project.work",
        "search_read",
        [("external_id", "=", external_id)],
        0,
        None,
        None,
        ["timesheet_duration"],
    )
    return work["timesheet_duration"]
