"""A Harvest pull killed with SIGKILL (mid-page, while the server holds page 2; or after its
window committed but before the cursor moved) and run again lands every entry exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from staging_models.api_pull import pull, read_cursor
from staging_models.db import StagingDB
from tests.support.api_vendors import harvest_vendor
from tests.support.vendor_api import FakeHarvest, serve

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
TOKEN = "hv-crash-token"


def _child(url: str, fake: FakeHarvest, folder: Path, kill_at: str = "") -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEPOST_")}
    env["PYTHONPATH"] = str(ROOT)
    args = [url, f"{fake.url}/v2", TOKEN, str(folder), NOW.isoformat()] + (
        [kill_at] if kill_at else []
    )
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.api_pull_child", *args], env=env, cwd=ROOT
    )


def _once(db: StagingDB) -> None:
    per_key = db.query_df(
        "SELECT row_key, count(*) AS n FROM stg_time_entries GROUP BY row_key ORDER BY row_key"
    )
    assert len(per_key) == 5 and set(per_key.n) == {1}, per_key


@pytest.mark.parametrize("kill_at", ["mid_page", "cursor"])
def test_sigkill_then_rerun_lands_every_entry_once(tmp_path: Path, kill_at: str) -> None:
    url = f"duckdb:///{tmp_path / 'staging.duckdb'}"
    db = StagingDB(url)
    db.init_schema()
    db.engine.dispose()  # DuckDB: one writing process, the child
    folder = tmp_path / "pulls"
    with serve(FakeHarvest(TOKEN)) as fake:
        if kill_at == "mid_page":
            fake.stall("/v2/time_entries", 2)
            child = _child(url, fake, folder)
            assert fake.stalled.wait(60), "the child never asked for page 2"
            child.kill()  # SIGKILL while page 2 is on its way
            fake.release()
        else:
            child = _child(url, fake, folder, "cursor")
        assert child.wait(60) == -9

        db = StagingDB(url)
        landed = db.scalar("SELECT count(*) FROM loads WHERE status = 'landed'")
        assert landed == (0 if kill_at == "mid_page" else 1)
        assert read_cursor(db, "harvest", "time_entries") is None  # never moved
        assert not list(folder.glob(".*.part"))  # or it is cleaned by the next pull

        r = pull(
            db,
            harvest_vendor(fake),
            "time_entries",
            source_name="harvest",
            folder=folder,
            now=NOW + timedelta(minutes=5),
        )
        assert r.records == 5
        if kill_at == "cursor":  # the same records again: the very bytes already landed
            assert r.load["status"] == "duplicate" and r.load["rows_new_version"] == 0
        _once(db)
        assert read_cursor(db, "harvest", "time_entries") == NOW + timedelta(minutes=5)
        rows_read = db.scalar("SELECT sum(rows_read) FROM loads WHERE status = 'landed'")
        assert rows_read == 5  # one landed window of five rows, whichever crash
        db.engine.dispose()
