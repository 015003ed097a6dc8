"""One posting window per legal entity at a time: lock rows in staging, each taken in its own
transaction.

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

Per entity (`WindowLock`): a window scoped to legal entities takes one row per entity,
`posting:<entity>`, in sorted order; a window over all entities takes the global row
`posting`. Windows of different entities run in parallel. An entity window and an
all-entity window exclude each other: each first commits its own rows, then looks at the
other kind (the entity window at `posting`, the all-entity window at every `posting:*`
row) and backs off if a live holder is there. Whichever commits second sees the first, so
they never both post (at worst both back off and say so). Every lock is taken without
waiting (a conflict refuses at once), so two windows can never deadlock. A row of a dead
or stale holder is taken over (or cleared, for the other kind's row), so that holder, if
it still runs somewhere, finds its lock lost before it sends again.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from staging_models.db import StagingDB
from staging_models.ledger_tables import posting_lock

DEFAULT_LOCK = "posting"  # the global row: a window over all legal entities
ENTITY_PREFIX = "posting:"  # + entity: a window scoped to that legal entity
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


def _heartbeat_utc(row) -> datetime | None:
    beat = row.heartbeat_at
    if beat is not None and beat.tzinfo is None:
        beat = beat.replace(tzinfo=UTC)
    return beat


def _stale(row, now: datetime, stale_after: timedelta) -> bool:
    """The holder of lock row `row` is dead (same host) or silent longer than `stale_after`."""
    beat = _heartbeat_utc(row)
    return _holder_alive(row.holder) is False or beat is None or now - beat > stale_after


def _held_message(row, name: str, stale_after: timedelta) -> str:
    scope = (
        "all legal entities"
        if name == DEFAULT_LOCK
        else f"legal entity {name.removeprefix(ENTITY_PREFIX)}"
    )
    beat = _heartbeat_utc(row)
    return (
        f"Another posting window ({row.window_id}) is posting {scope} since "
        f"{row.acquired_at:%Y-%m-%d %H:%M:%S %Z} (holder {row.holder}, last "
        f"heartbeat {beat:%H:%M:%S %Z}). Wait for it to finish; if it died, "
        f"its lock expires {stale_after} after the last heartbeat "
        "(STAGEPOST_POSTING_LOCK_STALE_SECONDS)."
    )


def lock_names(legal_entities: Sequence[str]) -> list[str]:
    """The lock rows a window over `legal_entities` takes, in the order it takes them: one per
    entity, sorted; none given (all entities): the global row."""
    if not legal_entities:
        return [DEFAULT_LOCK]
    return [f"{ENTITY_PREFIX}{e}" for e in sorted(set(legal_entities))]


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
                    if not _stale(row, now, self.stale_after):
                        raise PostingLocked(_held_message(row, self.name, self.stale_after))
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


@dataclass
class WindowLock:
    """All the lock rows of one window (`lock_names`), held together; the same interface as
    `PostingLock`. See the module doc for how entity and all-entity windows exclude each other."""

    db: StagingDB
    window_id: str
    legal_entities: Sequence[str] = ()
    stale_after: timedelta = DEFAULT_STALE_AFTER
    locks: list[PostingLock] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return lock_names(self.legal_entities)

    @property
    def holder(self) -> str:
        return self.locks[0].holder if self.locks else ""

    @property
    def taken_over(self) -> str | None:
        return next((lk.taken_over for lk in self.locks if lk.taken_over), None)

    def acquire(self) -> WindowLock:
        try:
            for name in self.names:  # sorted: no two windows wait on each other in a cycle
                lock = PostingLock(self.db, self.window_id, name, self.stale_after)
                lock.acquire()
                self.locks.append(lock)
            self._check_other_kind()
        except BaseException:
            self.release()
            raise
        return self

    def _check_other_kind(self) -> None:
        """After our rows are committed: no live window of the other kind (entity windows vs
        the all-entity window) may hold a row that overlaps ours. A stale one is cleared."""
        now = datetime.now(UTC)
        ours = self.names
        cond = (
            posting_lock.c.lock_name.like(f"{ENTITY_PREFIX}%")
            if ours == [DEFAULT_LOCK]
            else posting_lock.c.lock_name == DEFAULT_LOCK
        )
        try:
            self._clear_other_kind(cond, now)
        except sa.exc.DBAPIError as e:  # DuckDB: write-write conflict clearing a stale row
            raise PostingLocked(
                "Another posting window took a lock at the same moment; try again later."
            ) from e

    def _clear_other_kind(self, cond, now: datetime) -> None:
        with self.db.begin() as conn:
            rows = conn.execute(
                sa.select(
                    posting_lock.c.lock_name,
                    posting_lock.c.holder,
                    posting_lock.c.window_id,
                    posting_lock.c.acquired_at,
                    posting_lock.c.heartbeat_at,
                ).where(cond, posting_lock.c.holder.is_not(None))
            ).all()
            for row in rows:
                if not _stale(row, now, self.stale_after):
                    raise PostingLocked(_held_message(row, row.lock_name, self.stale_after))
                conn.execute(
                    posting_lock.update()
                    .where(
                        posting_lock.c.lock_name == row.lock_name,
                        posting_lock.c.holder == row.holder,
                    )
                    .values(holder=None, window_id=None, acquired_at=None, heartbeat_at=None)
                )

    def heartbeat(self, conn: Connection | None = None) -> None:
        for lock in self.locks:
            lock.heartbeat(conn)

    def check(self) -> None:
        for lock in self.locks:
            lock.check()

    def release(self) -> None:
        for lock in reversed(self.locks):
            lock.release()
        self.locks = []

    def __enter__(self) -> WindowLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
