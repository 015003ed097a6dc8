"""ZIP exports in the inbox (solidtime's organisation export): unpacked into the inbox before
the time entries land, so each member lands as a dropped file would.

A complete ZIP that a mapping's `[archive]` takes is fetched, unpacked safely into scratch
space (`connectors.sources.archive`: declared members only, no paths, size and ratio limits),
its members put into the inbox under names the mapping takes, and only then archived. A crash
in between leaves the ZIP in the inbox: the next pass unpacks it again into the same names and
bytes, and landing finds what already landed `duplicate`. An archive that cannot be unpacked
is refused like any file: recorded in `loads`, set aside with its reason.
"""

from __future__ import annotations

from pathlib import Path

from connectors.sources.archive import unpack
from connectors.sources.base import RemoteFile, RetryableSourceError, SourceError
from connectors.sources.formats import FileFormat
from connectors.sources.limits import FileFormatError
from staging_models.db import StagingDB
from staging_models.scratch import scratch_dir


def expand_archives(
    db: StagingDB,
    source,  # connectors.sources.base.FileSource
    fmt: FileFormat,
    files: list[RemoteFile],
    workdir: Path,
    report,  # staging_models.landing.IngestReport
    log=None,
) -> list[RemoteFile]:
    """`files` (complete time-entry files) with each ZIP export replaced by its unpacked
    time-entry member; the other members wait in the inbox for their datasets' runs."""
    from staging_models.landing import LoadResult, _set_aside, refuse_by_name

    out: list[RemoteFile] = []
    for f in files:
        spec = fmt.archive_for(f.name)
        if spec is None:
            out.append(f)
            continue
        local: Path | None = None
        try:
            local = source.fetch(f, workdir)
            with scratch_dir(workdir) as tmp:
                names = source.put(unpack(local, spec, tmp / "members", fmt.limits))
        except RetryableSourceError as e:
            report.failures.append(
                LoadResult("time_entries", f.display, "", status="failed", message=str(e))
            )
            continue
        except (FileFormatError, SourceError) as e:
            reason = str(e) if str(e).startswith(f.display) else f"{f.display}: {e}"
            _set_aside(
                source, f, refuse_by_name(db, source, f, "time_entries", reason), report, log
            )
            continue
        finally:
            if local is not None and local.parent == workdir and local.exists():
                local.unlink()  # a fetched copy; the source keeps the original
        source.archive(f)
        report.unpacked[f.display] = names
        if log:
            log.info(f"{f.display}: unpacked into the inbox as {', '.join(names)}")
        for name in names:
            if fmt.dataset_of(name) == "time_entries" and (placed := source.stat(name)):
                out.append(placed)
    return out
