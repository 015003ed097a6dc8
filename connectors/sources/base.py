"""The one interface every PSA file source implements (local folder, SFTP folder).

Ingestion only ever sees `RemoteFile`s that the source judged complete, fetches
them into a local work folder it controls, and archives them once the staging
database has committed the load. Names coming from a remote side are never used
as local paths without `safe_local_name`.
"""

from __future__ import annotations

import fnmatch
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from connectors.sources.canonical import DATASETS as _CANONICAL

DATASETS: tuple[str, ...] = tuple(_CANONICAL)

SUPPORTED_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".xlsx", ".parquet")
_TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".filepart", ".crdownload", ".done")


class SourceError(Exception):
    """A source problem an operator must fix (bad credentials, unknown host key...)."""


class RetryableSourceError(SourceError):
    """A transient source problem (server down, connection dropped); retry later."""


@dataclass(frozen=True)
class RemoteFile:
    """A file as listed by a source: its base name, size in bytes and mtime (epoch seconds)."""

    name: str
    size: int
    mtime: float


def dataset_of(file_name: str) -> str | None:
    """The dataset a file belongs to by its name (`<dataset>*.csv|csv.gz|xlsx|parquet`).

    The longest matching dataset name wins, so `project_tasks_1.csv` is
    `project_tasks`, not `projects`.
    """
    lower = file_name.lower()
    if not lower.endswith(SUPPORTED_SUFFIXES):
        return None
    for ds in sorted(DATASETS, key=len, reverse=True):
        if lower.startswith(ds):
            return ds
    return None


def is_candidate_name(file_name: str, pattern: str = "*") -> bool:
    """Whether a listed name could be a data file: no dotfiles, no temporary names."""
    if file_name.startswith(".") or file_name.startswith("~$"):
        return False
    if file_name.lower().endswith(_TEMP_SUFFIXES):
        return False
    return fnmatch.fnmatch(file_name, pattern) and dataset_of(file_name) is not None


_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_local_name(remote_name: str) -> str:
    """A local file name derived from an untrusted remote name.

    Strips any directory part (both separators), replaces unusual characters and
    refuses names that would still be special (`.`, `..`, empty).
    """
    base = remote_name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _SAFE.sub("_", base).lstrip(".")
    if not base or base in {".", ".."}:
        raise SourceError(f"refusing unsafe remote file name {remote_name!r}")
    return base


class FileSource(ABC):
    """A folder of PSA exports somewhere (local disk, SFTP)."""

    #: Short name used in the loads table and in run tags.
    name: str

    #: Only names matching this glob; only files with a `NAME.done` marker; or, without
    #: markers, only files whose size and mtime hold for `stable_seconds` between two listings.
    pattern: str = "*"
    done_markers: bool = False
    stable_seconds: float = 0.0

    @abstractmethod
    def _listing(self) -> dict[str, RemoteFile]:
        """Regular files in the inbox by name (one listing, one round trip)."""

    def list_complete(self) -> list[RemoteFile]:
        """Data files that are complete (done marker present, or size/mtime stable)."""
        first = self._listing()
        names = set(first)
        candidates = [f for n, f in first.items() if is_candidate_name(n, self.pattern)]
        if self.done_markers:
            return sorted(
                (f for f in candidates if f"{f.name}.done" in names), key=lambda f: f.name
            )
        if self.stable_seconds > 0:
            time.sleep(self.stable_seconds)
            second = self._listing()
            candidates = [f for f in candidates if second.get(f.name) == f]
        return sorted(candidates, key=lambda f: f.name)

    @abstractmethod
    def fetch(self, file: RemoteFile, dest_dir: Path) -> Path:
        """Make the file readable at a local path inside `dest_dir` and return that path."""

    @abstractmethod
    def archive(self, file: RemoteFile) -> None:
        """Move the file (and its done marker) out of the inbox, atomically."""

    def describe(self) -> str:
        """Where this source reads from, without secrets (for logs and metadata)."""
        return self.name

    def close(self) -> None:  # noqa: B027 - a no-op by default, not an abstract duty
        """Release connections; a later operation may reconnect. Nothing to do locally."""

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
