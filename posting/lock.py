"""One posting window at a time: a lock row in staging, taken in its own transaction.

Two windows posting at once is how duplicates reach an ERP (two jobs both
looking up an ID, both creating it). Dagster's tag limit already queues
posting runs, but a CLI run, a second Dagster instance or a stuck run must not
slip past it, so the lock lives in the staging database: it works across
processes and hosts on PostgreSQL and across threads on DuckDB (whose file lock
already keeps other processes out).

Taking it is compare-and-set on one row: PostgreSQL serialises the two updates
(the loser re-reads a non-empty holder), DuckDB aborts the second writer with a
conflict; either way the loser fails fast with a message naming the holder.
A holder that died is detected two ways: its process is gone (same host) or
its heartbeat is older than the timeout (`STAGEPOST_POSTING_LOCK_STALE_SECONDS`).
"Gone" includes a zombie: a killed process its parent has not reaped yet still
answers `kill(pid, 0)`, so its state in /proc is read as well (Z or X = dead).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from staging_models.db import StagingDB
from staging_models.ledger_tables import posting_lock

DEFAULT_LOCK = "posting"
DEFAULT_STALE_AFTER = timedelta(minutes=15)
_DEAD_STATES = frozenset({"Z", "X", "x"})


class PostingRefused(RuntimeError):
    """A posting window refused to start; nothing was posted and the message says why."""


class PostingLocked(PostingRefused):
    """Another posting window holds the lock."""


class PostingLockLost(RuntimeError):
    """This window's lock was taken over (its heartbeat was considered stale): stop posting."""


def _process_state(pid: int) -> str | None:
    """The one-letter state of `pid` from /proc (R, S, D, Z, X...), or None where there is no
    /proc. The command name may hold spaces and parentheses, so the state is read after the
    last `)`."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "X" if Path("/proc/self/stat").exists() else None
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[0] if fields else None


def _holder_alive(holder: str) -> bool | None:
    """True/False when the holder ran on this host (its pid can be checked), else None.

    A zombie (state Z) or dying process (X) is dead: it can never heartbeat again, though
    `kill(pid, 0)` still succeeds on it until its parent reaps it.
    """
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists; its state says whether it lives
    return _process_state(pid) not in _DEAD_STATES


@dataclass
class PostingLock:
    """The lock of one window; use `acquire()` / `release()` or as a context manager."""

    db: StagingDB
    window_id: str
    name: str = DEFAULT_LOCK
    stale_after: timedelta = DEFAULT_STALE_AFTER
    taken_over: str | None = None  # the dead holder this window replaced, if any

    @property
    def holder(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}:{self.window_id}"

    def acquire(self) -> PostingLock:
        now = datetime.now(UTC)
        try:
            with self.db.begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO posting_lock (lock_name) VALUES (:n) ON CONFLICT DO NOTHING"
                    ),
                    {"n": self.name},
                )
        except sa.exc.DBAPIError:
            pass  # another window created the row at the same moment: fine, it exists
        try:
            with self.db.begin() as conn:
                row = conn.execute(
                    sa.select(
                        posting_lock.c.holder,
                        posting_lock.c.window_id,
                        posting_lock.c.acquired_at,
                        posting_lock.c.heartbeat_at,
                    ).where(posting_lock.c.lock_name == self.name)
                ).one_or_none()
                if row is None:  # DuckDB: our INSERT lost to one not committed yet
                    raise PostingLocked(
                        "Another posting window is taking the lock at this moment; try again later."
                    )
                if row.holder is not None:
                    alive = _holder_alive(row.holder)
                    beat = row.heartbeat_at
                    if beat is not None and beat.tzinfo is None:
                        beat = beat.replace(tzinfo=UTC)
                    stale = alive is False or beat is None or now - beat > self.stale_after
                    if not stale:
                        raise PostingLocked(
                            f"Another posting window ({row.window_id}) is running since "
                            f"{row.acquired_at:%Y-%m-%d %H:%M:%S %Z} (holder {row.holder}, last "
                            f"heartbeat {beat:%H:%M:%S %Z}). Wait for it to finish; if it died, "
                            f"its lock expires {self.stale_after} after the last heartbeat "
                            "(STAGEPOST_POSTING_LOCK_STALE_SECONDS)."
                        )
                    self.taken_over = row.window_id
                upd = posting_lock.update().where(posting_lock.c.lock_name == self.name)
                upd = upd.where(
                    posting_lock.c.holder.is_(None)
                    if row.holder is None
                    else posting_lock.c.holder == row.holder
                )
                conn.execute(
                    upd.values(
                        holder=self.holder,
                        window_id=self.window_id,
                        acquired_at=now,
                        heartbeat_at=now,
                    )
                )
                got = self._current_holder(conn)
                if got != self.holder:
                    raise PostingLocked(
                        f"Another posting window took the lock at the same moment (holder {got})."
                    )
        except sa.exc.DBAPIError as e:  # DuckDB: write-write conflict with the other window
            raise PostingLocked(
                "Another posting window took the lock at the same moment; try again later."
            ) from e
        return self

    def heartbeat(self, conn: Connection | None = None) -> None:
        """Prove this window is alive, inside `conn`'s transaction if given (one commit less per
        batch); raises `PostingLockLost` if another window took over."""
        if conn is None:
            with self.db.begin() as own:
                return self.heartbeat(own)
        conn.execute(
            posting_lock.update()
            .where(posting_lock.c.lock_name == self.name, posting_lock.c.holder == self.holder)
            .values(heartbeat_at=datetime.now(UTC))
        )
        self._ensure_held(conn)

    def check(self) -> None:
        """Raise `PostingLockLost` if another window took over (read-only: no commit, so it
        costs nothing to ask before every ERP request)."""
        with self.db.engine.connect() as conn:
            self._ensure_held(conn)

    def _current_holder(self, conn: Connection) -> str | None:
        return conn.execute(
            sa.select(posting_lock.c.holder).where(posting_lock.c.lock_name == self.name)
        ).scalar()

    def _ensure_held(self, conn: Connection) -> None:
        got = self._current_holder(conn)
        if got != self.holder:
            raise PostingLockLost(
                f"posting window {self.window_id} lost its lock to {got}: stopping before sending more"
            )

    def release(self) -> None:
        with self.db.begin() as conn:
            conn.execute(
                posting_lock.update()
                .where(posting_lock.c.lock_name == self.name, posting_lock.c.holder == self.holder)
                .values(holder=None, window_id=None, acquired_at=None, heartbeat_at=None)
            )

    def __enter__(self) -> PostingLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
