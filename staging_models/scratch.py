"""Scratch folders of landings (`<work>/.load-*`), and removing those of dead runs.

A landing writes a transcoded copy of a legacy-encoded file (as big as the file) into a
scratch folder and removes it when it ends. A process that is killed (SIGKILL, OOM, power
loss) cannot; the next landing removes what dead runs left. The folder's name records its
owner (host, boot, pid and the pid's start time), so a live run's scratch is never taken
for a dead one, even after the pid was reused or on a work folder shared between hosts.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = ".load-"
#: Scratch of versions before the owner was recorded (`tempfile` names): no owner to ask, so
#: removed only once nothing has touched them for a day (no landing runs that long).
_LEGACY = re.compile(r"\.load-[a-z0-9_]{8}")
LEGACY_AGE_SECONDS = 24 * 3600
_NAME = re.compile(
    r"\.load-(?P<host>[A-Za-z0-9_.]+)~(?P<boot>[0-9a-f]{8})~(?P<pid>\d+)~(?P<start>\d+)~[0-9a-f]+"
)


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip().replace("-", "")[:8]
    except OSError:
        return "00000000"


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        pass
    try:
        os.kill(pid, 0)  # no /proc (not Linux): alive or not, without the start time
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return 0


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:40] or "host"


def owner_tag(pid: int | None = None) -> str:
    """`host~boot~pid~start` of a process (this one by default)."""
    pid = os.getpid() if pid is None else pid
    return f"{_host()}~{_boot_id()}~{pid}~{_start_time(pid) or 0}"


def is_dead(folder_name: str, mtime: float | None = None) -> bool:
    """Whether the run that owns this scratch folder is certainly gone."""
    if _LEGACY.fullmatch(folder_name):
        return mtime is not None and time.time() - mtime > LEGACY_AGE_SECONDS
    m = _NAME.fullmatch(folder_name)
    if not m or m["host"] != _host():
        return False  # not ours to judge: another host's run, or a name we do not know
    if m["boot"] != _boot_id():
        return True  # written before this machine last booted
    start = _start_time(int(m["pid"]))
    if start is None:
        return True
    return start != 0 and start != int(m["start"])  # the pid now belongs to another process


def clean_dead_scratch(workdir: Path) -> list[str]:
    """Remove the scratch folders of dead landings in `workdir`; returns their names."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(workdir))
    except FileNotFoundError:
        return removed
    for e in entries:
        if not (e.name.startswith(PREFIX) and e.is_dir(follow_symlinks=False)):
            continue
        if is_dead(e.name, e.stat(follow_symlinks=False).st_mtime):
            shutil.rmtree(e.path, ignore_errors=True)
            if not os.path.lexists(e.path):
                removed.append(e.name)
                log.info("removed scratch %s left by a landing that died", e.path)
    return removed


@contextmanager
def scratch_dir(workdir: Path) -> Iterator[Path]:
    """A fresh scratch folder owned by this process, removed when the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{PREFIX}{owner_tag()}~{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
