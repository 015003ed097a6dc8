"""Master data derived from pulled time entries (Toggl, Kimai, Clockify), as the file side
derives it from an export (`staging_models.derived`).

These APIs are pulled for time entries only, so without this a user of one of them alone had
every entry quarantined as an unknown employee, project or task until someone wrote master
data by hand. A pulled window (`window.write_rows`) carries, beside the canonical columns,
the names the vendor sends with each entry (`window.DERIVE_COLUMNS`: project and customer names, the task's); this mapping reads the
window as it is (one rule per canonical column) and derives employees, projects and tasks from
it with the `[derived.*]` machinery of vendor files: one row per key, set-based, the legal
entity and currency defaults (`STAGEPOST_DEFAULT_LEGAL_ENTITY`, `_CURRENCY`) where the vendor
says nothing, and a master-data file or a vendor's own master-data pull wins over a derived row.
"""

from __future__ import annotations

from functools import cache

from connectors.sources.canonical import TIME_ENTRIES
from connectors.sources.formats import FileFormat, SourceDefaults
from connectors.sources.mapping import SourceMapping, parse_mapping

#: The pulled windows of time entries (`staging_models.api_pull`), incremental and full.
FILES = ["time_entries_api_*.parquet", "time_entries_full_api_*.parquet"]


def _col(name: str) -> dict:
    return {"source": name, "optional": True}


@cache
def api_mapping() -> SourceMapping:
    """The mapping of a pulled window: canonical columns as they are, master data derived."""
    spec = {
        "name": "API pull (master data derived from the pulled entries)",
        "time_entries": {"files": FILES, **{c: _col(c) for c in TIME_ENTRIES.column_names}},
        "derived": {
            "employees": {
                "employee_id": _col("employee_id"),
                "employee_name": _col("employee_name"),
            },
            "projects": {
                "project_code": _col("project_code"),
                "project_name": _col("project_name"),
                "customer_id": _col("customer_id"),
                "customer_name": _col("customer_name"),
                "currency": _col("currency"),
            },
            "project_tasks": {
                "project_code": _col("project_code"),
                "task_code": _col("task_code"),
                "task_name": _col("task_name"),
            },
        },
    }
    return parse_mapping(spec, "api_pull (built in)")


def derive_format(legal_entity: str | None, currency: str | None) -> FileFormat:
    """How a pulled window is read when its vendor's master data is derived from it."""
    return FileFormat(
        mapping=api_mapping(),
        defaults=SourceDefaults(legal_entity=legal_entity, currency=currency),
    )
