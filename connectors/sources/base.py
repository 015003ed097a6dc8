"""The one interface every PSA file source implements (local folder, SFTP folder).

Ingestion only ever sees `RemoteFile`s that the source judged complete, fetches
them into a local work folder it controls, and archives them once the staging
database has committed the load. Names coming from a remote side are never used
as local paths without `safe_local_name`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import time
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable
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
    """A file as listed by a source: its base name, size in bytes and mtime (epoch seconds).

    `ctime` (inode change time, local folders only) moves on every write and cannot be set
    back by the writer, so two listings that agree on it saw the same bytes. A name that is
    not valid UTF-8 carries its bytes as surrogates (`os.fsdecode`'s convention).
    """

    name: str
    size: int
    mtime: float
    ctime: float | None = None

    @property
    def display(self) -> str:
        return display_name(self.name)


#: Longest name (UTF-8 bytes) stagepost takes: NAME_MAX (255) less room for `NAME.done`,
#: `.NAME.part` and the transcoded `NAME.utf8.csv` that are derived from it.
MAX_NAME_BYTES = 240


def display_name(name: str) -> str:
    """A name as text that is safe to store, log and show: bytes that are not UTF-8 as
    `\\xNN`, control and other invisible characters as `\\xNN` / `\\uNNNN`."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(
        c if c.isprintable() else (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")
        for c in text
    )


def name_problem(name: str) -> str | None:
    """Why a data file's name cannot be landed (it is refused and set aside), or None."""
    raw = name.encode("utf-8", "surrogateescape")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "the file name is not valid UTF-8 (rename the file using UTF-8)"
    if len(raw) > MAX_NAME_BYTES:
        return (
            f"the file name is {len(raw)} bytes long; stagepost takes names of at most "
            f"{MAX_NAME_BYTES} bytes (room for NAME.done and temporary names)"
        )
    if any(unicodedata.category(c) == "Cc" for c in name):
        return "the file name contains control characters (line breaks, tabs...)"
    if "\\" in name:
        return "the file name contains a backslash (a folder separator on Windows)"
    return None


def reason_file_name(name: str) -> str:
    """The name of the text file that explains why `name` was set aside: `NAME.reason.txt`
    when that is a plain, short name, else a sanitised stub plus a hash of the raw name."""
    if name_problem(name) is None and _SAFE_REASON.fullmatch(name) and len(name) <= 200:
        return f"{name}.reason.txt"
    raw = name.encode("utf-8", "surrogateescape")
    stub = _SAFE.sub("_", raw.decode("ascii", "replace"))[:120].lstrip(".") or "file"
    return f"{stub}.{hashlib.sha256(raw).hexdigest()[:12]}.reason.txt"


#: A vendor mapping's view of file names: the dataset a vendor-named file holds, or None.
Classifier = Callable[[str], "str | None"]


def dataset_of(file_name: str, classify: Classifier | None = None) -> str | None:
    """The dataset a file belongs to by its name: a vendor mapping's `files` globs
    (`classify`), else `<dataset>*.csv|csv.gz|xlsx|parquet`.

    The longest matching dataset name wins, so `project_tasks_1.csv` is
    `project_tasks`, not `projects`.
    """
    if classify is not None:
        vendor = classify(file_name)
        if vendor is not None:
            return vendor
    lower = file_name.lower()
    if not lower.endswith(SUPPORTED_SUFFIXES):
        return None
    for ds in sorted(DATASETS, key=len, reverse=True):
        if lower.startswith(ds):
            return ds
    return None


def is_candidate_name(
    file_name: str, pattern: str = "*", classify: Classifier | None = None
) -> bool:
    """Whether a listed name could be a data file: no dotfiles, no temporary names."""
    if file_name.startswith(".") or file_name.startswith("~$"):
        return False
    if file_name.lower().endswith(_TEMP_SUFFIXES):
        return False
    return fnmatch.fnmatch(file_name, pattern) and dataset_of(file_name, classify) is not None


_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_SAFE_REASON = re.compile(r"[A-Za-z0-9._ ()+,=@-]+")


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
    #: Vendor file names a mapping takes (`SourceMapping.dataset_of`), besides `<dataset>*`.
    classify: Classifier | None = None

    def dataset_of(self, file_name: str) -> str | None:
        """The dataset of a file of this source (vendor names included)."""
        return dataset_of(file_name, self.classify)

    #: Set by each listing: data-file names that were not taken and why (symbolic links,
    #: special files, names a server must not be sent back), for the run's metadata.
    notices: dict[str, str]
    #: Set by `list_complete`: data files seen but not complete yet (they wait for a later run).
    waiting: list[str]

    @abstractmethod
    def _listing(self) -> dict[str, RemoteFile]:
        """Regular files in the inbox by name (one listing, one round trip); fills `notices`."""

    def _candidates(self, listing: dict[str, RemoteFile], dataset: str | None) -> list[RemoteFile]:
        return sorted(
            (
                f
                for n, f in listing.items()
                if is_candidate_name(n, self.pattern, self.classify)
                and (dataset is None or self.dataset_of(n) == dataset)
            ),
            key=lambda f: f.name,
        )

    def _quiet(self, f: RemoteFile, now: float) -> bool:
        """Whether the file's own timestamps already prove it unchanged for `stable_seconds`
        (local folders); remote mtimes come from another clock, so never there."""
        return False

    def list_complete(self, dataset: str | None = None) -> list[RemoteFile]:
        """Data files (of `dataset`, or all) that are complete: done marker present, or size
        and mtime unchanged across two listings `stable_seconds` apart. Files already quiet
        that long by their own timestamps skip the second listing (no wait). Files whose name
        will be refused are returned at once: a name does not become acceptable by waiting
        (and a 255-byte name cannot even have a marker)."""
        first = self._listing()
        notices = dict(self.notices)
        candidates = self._candidates(first, dataset)
        self.waiting = []
        if self.done_markers:
            done = [f for f in candidates if f"{f.name}.done" in first or name_problem(f.name)]
            self.waiting = [f.display for f in candidates if f not in done]
            return done
        if self.stable_seconds <= 0:
            return candidates
        now = time.time()
        ready = [f for f in candidates if self._quiet(f, now) or name_problem(f.name)]
        young = [f for f in candidates if f not in ready]
        if young:
            time.sleep(self.stable_seconds)
            second = self._listing()
            notices.update(self.notices)
            ready += [f for f in young if second.get(f.name) == f]
            self.waiting = [f.display for f in young if second.get(f.name) != f]
        self.notices = notices
        return sorted(ready, key=lambda f: f.name)

    def inbox_names(self) -> set[str]:
        """Names of the regular files in the inbox, complete or not."""
        return set(self._listing())

    @abstractmethod
    def stat(self, name: str) -> RemoteFile | None:
        """The file as it is now (None if it is gone)."""

    def unchanged(self, file: RemoteFile) -> bool:
        """Whether the file still is what was listed (same size, mtime, ctime)."""
        return self.stat(file.name) == file

    @abstractmethod
    def fetch(self, file: RemoteFile, dest_dir: Path) -> Path:
        """Make the file readable at a local path inside `dest_dir` and return that path."""

    @abstractmethod
    def archive(self, file: RemoteFile) -> None:
        """Move the file (and its done marker) out of the inbox, atomically."""

    @abstractmethod
    def reject(self, file: RemoteFile, reason: str) -> str:
        """Move a refused file (and its done marker) from the inbox into the rejected folder,
        with `reason` in a text file next to it; returns where it went, for messages."""

    @abstractmethod
    def rejected_names(self) -> set[str]:
        """Names of the files in the rejected folder (empty if there is none)."""

    def put(self, files: dict[str, Path]) -> list[str]:
        """Drop local files into the inbox under the given names, each complete at once
        (unpacked members of a vendor's ZIP export, `connectors.sources.archive`)."""
        raise SourceError(
            f"{self.describe()}: ZIP exports are unpacked from a local inbox only; unpack it "
            "and drop its CSV files instead"
        )

    def describe(self) -> str:
        """Where this source reads from, without secrets (for logs and metadata)."""
        return self.name

    def close(self) -> None:  # noqa: B027 - a no-op by default, not an abstract duty
        """Release connections; a later operation may reconnect. Nothing to do locally."""

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def marker_name(name: str) -> str | None:
    """`NAME.done`, unless that name would be longer than a file system holds."""
    marker = f"{name}.done"
    return marker if len(marker.encode("utf-8", "surrogateescape")) <= 255 else None


def reason_text(file: RemoteFile, reason: str, where: str) -> str:
    """The content of the reason file written next to a refused file."""
    from datetime import UTC, datetime

    return (
        f"file: {file.display}\n"
        f"size: {file.size} bytes\n"
        f"refused at: {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}\n"
        f"moved to: {where}\n"
        f"reason: {reason}\n\n"
        "Nothing from this file was landed. Fix it and drop it into the inbox again (a file\n"
        "of the same name that lands resolves this refusal), or delete it from this folder\n"
        "once you have decided it is not needed.\n"
    )
