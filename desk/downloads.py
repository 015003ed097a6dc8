"""Downloads of workbooks and posting previews, read-only, resolved when asked.

Two folders (`reconciliation.report_files`): the reports folder and the previews folder. A
name is served only if it is one plain file name directly inside its folder: no separators,
no `..`, no hidden files, no symlink leading out; anything else is 404. Links are the desk's
(`/files/<folder>/<name>`), so they do not depend on which process wrote the file.
"""

from __future__ import annotations

import posixpath
from datetime import UTC, datetime
from pathlib import Path

from reconciliation.report_files import previews_dir, reports_dir

FOLDERS = {"reports": reports_dir, "previews": previews_dir}
SUFFIXES = (".xlsx", ".csv", ".pdf")


def resolve(folder: str, name: str) -> Path | None:
    """The file, if `name` is a plain file directly in the folder; None otherwise."""
    root_of = FOLDERS.get(folder)
    if root_of is None:
        return None
    if (
        not name
        or "/" in name
        or "\\" in name
        or name.startswith(".")
        or "\x00" in name
        or posixpath.normpath(name) != name
    ):
        return None
    root = root_of().resolve()
    path = (root / name).resolve()
    if path.parent != root or not path.is_file():
        return None
    return path


def listing(folder: str, limit: int = 200) -> list[dict]:
    """Files of a folder, newest first (what is there now, not what was written once)."""
    root = FOLDERS[folder]()
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUFFIXES
    ]
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [
        {
            "name": p.name,
            "size": p.stat().st_size,
            "modified": datetime.fromtimestamp(p.stat().st_mtime, UTC),
        }
        for p in found[:limit]
    ]


def preview_name(window_id: str) -> str | None:
    """The window's preview workbook, if it is in the previews folder now."""
    name = f"posting_preview_{window_id}.xlsx"
    return name if resolve("previews", name) else None
