"""A pulled window as a Parquet file of canonical text columns, which landing reads like any
export (`<dataset>*.parquet`): every column a string, so hours and money stay exact decimals
written as text and are typed by landing's own SQL."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from connectors.sources.canonical import DATASETS

#: Columns beside the canonical ones of a pulled time-entry window: the names master data is
#: derived from (`connectors.sources.api.derive`); landing's canonical reading ignores them.
DERIVE_COLUMNS = ("project_name", "customer_id", "customer_name", "task_name")


def write_rows(rows: Iterable[dict], dataset: str, path: Path) -> int:
    """Write `rows` (canonical column -> text) to `path`, atomically; returns the row count.

    Written to `.NAME.part` and renamed: a pull killed mid-write leaves no file that could be
    taken for a complete window.
    """
    names = DATASETS[dataset].column_names
    if dataset == "time_entries":
        names += DERIVE_COLUMNS
    columns: dict[str, list[str | None]] = {c: [] for c in names}
    n = 0
    for row in rows:
        for c, values in columns.items():
            values.append(row.get(c))
        n += 1
    schema = pa.schema([(c, pa.string()) for c in names])
    table = pa.Table.from_pydict(columns, schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return n


def remove_partial(folder: Path) -> list[str]:
    """Remove `.NAME.part` files a killed pull left in `folder`; returns their names."""
    if not folder.is_dir():
        return []
    gone = []
    for p in folder.glob(".*.part"):
        p.unlink(missing_ok=True)
        gone.append(p.name)
    return gone
