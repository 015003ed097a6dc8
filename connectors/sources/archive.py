"""Vendor exports that come as a ZIP of CSV files (solidtime's organisation export), dropped
as they are: the mapping's `[archive]` says which members to take, and each is written into
the inbox under a name the mapping's `files` globs take, as if someone had unpacked it by hand.
From there every member lands like any dropped file (versions, loads ledger, archiving).

Unpacking is safe by construction:

- only the declared members are read, by their base name (a member in a folder is found, but
  its path is never used: no `../` or absolute path reaches the disk); a name declared twice,
  an encrypted member or a member that is not a regular file refuses the archive;
- each member's declared size and compression ratio are judged before inflating
  (`FileLimits`, as for XLSX and gzip), and bytes are counted while inflating;
- output files are written as `.NAME.part` and renamed: a crash never leaves half a member
  under a name ingestion would take, and unpacking again writes the same bytes (landing then
  finds them `duplicate`).

A lookup (`[[archive.lookup]]`) adds columns of one member to others by key, in DuckDB
(set-based, no Python loop over rows): solidtime's currency is in `organizations.csv`, and
`time_entries.csv` and `projects.csv` get it through `organization_id`.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import duckdb
from pydantic import BaseModel, ConfigDict, StrictStr, field_validator

from connectors.sources.limits import FileFormatError, FileLimits

_CHUNK = 1 << 20
_STEM = re.compile(r"[^A-Za-z0-9._-]+")


class ArchiveLookup(BaseModel):
    """`[[archive.lookup]]`: columns of member `file` (by its `key`) added to the members
    `into`, joined on their column `on`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    file: StrictStr
    key: StrictStr
    columns: tuple[StrictStr, ...]
    on: StrictStr
    into: tuple[StrictStr, ...]


class ArchiveSpec(BaseModel):
    """`[archive]`: the ZIP exports a mapping takes (`files` globs), the members to unpack,
    and the prefix their inbox names get (`solidtime_` + `time_entries` + `_<zip name>.csv`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    files: tuple[StrictStr, ...]
    members: tuple[StrictStr, ...]
    prefix: StrictStr
    lookup: tuple[ArchiveLookup, ...] = ()

    @field_validator("members")
    @classmethod
    def _plain(cls, members: tuple[str, ...]) -> tuple[str, ...]:
        for m in members:
            if "/" in m or "\\" in m or not m.lower().endswith(".csv"):
                raise ValueError(f"member {m!r}: a plain CSV file name (no folder)")
        return members

    def takes(self, file_name: str) -> bool:
        return any(fnmatch.fnmatch(file_name, g) for g in self.files)

    def inbox_name(self, archive_name: str, member: str) -> str:
        """The name a member gets in the inbox: unique per archive, taken by the mapping."""
        stem = _STEM.sub("_", archive_name.rsplit(".", 1)[0]).strip("._")[:120] or "archive"
        return f"{self.prefix}{member.rsplit('.', 1)[0]}_{stem}.csv"


def _members(zf: zipfile.ZipFile, spec: ArchiveSpec, name: str) -> dict[str, zipfile.ZipInfo]:
    """The declared members of the archive, by base name; refuses unsafe or doubled ones."""
    wanted = {m.lower(): m for m in {*spec.members, *(lk.file for lk in spec.lookup)}}
    found: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        if info.is_dir():
            continue
        base = PurePosixPath(info.filename.replace("\\", "/")).name
        member = wanted.get(base.lower())
        if member is None:
            continue
        if member in found:
            raise FileFormatError(f"{name}: refused: {member} appears twice in the archive")
        if info.flag_bits & 0x1:
            raise FileFormatError(f"{name}: refused: {member} is encrypted")
        found[member] = info
    missing = [m for m in spec.members if m not in found]  # a lookup's file may be absent
    if missing:
        raise FileFormatError(f"{name}: refused: the archive lacks {', '.join(missing)}")
    return found


def _check_sizes(infos: dict[str, zipfile.ZipInfo], name: str, limits: FileLimits) -> None:
    total = 0
    for member, info in infos.items():
        if info.file_size > limits.max_uncompressed_bytes:
            raise limits.inflated_error(name, member)
        if limits.over_ratio(info.file_size, info.compress_size):
            raise limits.ratio_error(name, member)
        total += info.file_size
    if total > limits.max_uncompressed_bytes:
        raise limits.inflated_error(name, "the archive's members")


def _inflate(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, name: str, limits: FileLimits
) -> None:
    """Copy one member to `dest`, counting: never more than the limit reaches the disk."""
    written = 0
    with zf.open(info) as src, open(dest, "wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > limits.max_uncompressed_bytes:
                raise limits.inflated_error(name, info.filename)
            out.write(chunk)


def _csv(path: Path) -> str:
    return (
        f"read_csv('{str(path).replace(chr(39), chr(39) * 2)}', header=true, all_varchar=true, "
        "quote='\"', escape='\"', strict_mode=true)"
    )


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _apply_lookup(work: Path, lookup: ArchiveLookup, name: str) -> None:
    """Add `lookup.columns` of `lookup.file` to each member in `lookup.into`, in DuckDB."""
    con = duckdb.connect()
    try:
        ref = _csv(work / lookup.file)
        cols = ", ".join(f"r.{_ident(c)}" for c in lookup.columns)
        for member in lookup.into:
            src, tmp = work / member, work / f".{member}.joined"
            sql = f"""COPY (
                SELECT m.* EXCLUDE (__n), {cols} FROM
                    (SELECT *, row_number() OVER () AS __n FROM {_csv(src)}) m
                LEFT JOIN (SELECT {_ident(lookup.key)} AS __k, {", ".join(_ident(c) for c in lookup.columns)}
                           FROM {ref}) r ON r.__k = m.{_ident(lookup.on)}
                ORDER BY m.__n
            ) TO '{str(tmp).replace(chr(39), chr(39) * 2)}' (HEADER, DELIMITER ',')"""
            try:
                con.execute(sql)
            except duckdb.Error as e:
                first = str(e).splitlines()[0]
                raise FileFormatError(
                    f"{name}: refused: {member} cannot take {', '.join(lookup.columns)} from "
                    f"{lookup.file} ({first})"
                ) from None
            os.replace(tmp, src)
    finally:
        con.close()


def unpack(path: Path, spec: ArchiveSpec, work: Path, limits: FileLimits) -> dict[str, Path]:
    """Unpack the declared members of the archive at `path` into the empty folder `work` and
    apply the lookups; returns inbox name -> unpacked file. Refuses (FileFormatError naming the
    archive and the reason) an unreadable archive, an unsafe member or one over the limits."""
    name = path.name
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise FileFormatError(f"{name}: not a readable ZIP archive ({e})") from None
    with zf:
        infos = _members(zf, spec, name)
        _check_sizes(infos, name, limits)
        work.mkdir(parents=True, exist_ok=True)
        try:
            for member, info in infos.items():
                _inflate(zf, info, work / member, name, limits)
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise FileFormatError(f"{name}: a member cannot be read ({e})") from None
    for lookup in spec.lookup:
        if lookup.file in infos:  # absent: the settings' defaults apply (currency)
            _apply_lookup(work, lookup, name)
    return {spec.inbox_name(name, m): work / m for m in spec.members}


def place(files: dict[str, Path], inbox: Path, marker: str | None = None) -> list[str]:
    """Put unpacked members into a local inbox, each as `.NAME.part` renamed into place (the
    same bytes again on a repeat: landing finds them `duplicate`), then its done marker
    (`marker`, e.g. `{}.done`) where the inbox uses them; returns the names."""
    out = []
    for inbox_name, local in files.items():
        tmp = inbox / f".{inbox_name}.part"
        shutil.copyfile(local, tmp)
        os.replace(tmp, inbox / inbox_name)
        if marker:
            (inbox / marker.format(inbox_name)).touch()
        out.append(inbox_name)
    return out
