"""Master data derived from a time export itself: employees, projects, tasks, rate cards.

Real exports (Harvest, Toggl, Clockify, Kimai, solidtime) come without master-data files,
so every time entry failed as an unknown employee, project or task until someone wrote them
by hand. A mapping's `[derived.<dataset>]` tables say which vendor columns of the time file
give which master-data column; here each becomes one load of that dataset, landed in the
same transaction as the time entries and through the same path (landing rows, versions,
loads ledger, conservation), recorded under the source name `<source> (derived)`.

- One row per key (GROUP BY in DuckDB, set-based); other columns take their largest value.
- What an export cannot know comes from defaults: a project's legal entity, currency and
  customer from the mapping's `[[project_defaults]]` (by project-code glob), then the
  settings (`STAGEPOST_DEFAULT_LEGAL_ENTITY`, `STAGEPOST_DEFAULT_CURRENCY`); status `open`,
  billing method `time_and_materials`, employees `active`. A currency no one gives stays
  empty: the project is quarantined (PRJ_CURRENCY_MISSING), never booked in a guess.
- A file wins: a key whose current version came from a master-data file is left as it is
  (`apply_versions(defer_to_files=True)`); a later file replaces a derived row.
- Rate cards (where the export carries rates): one per project, employee and rate, valid
  from its first work date to the day before the next rate's.

API pulls land through `land_file` with the same mapping, so they derive the same way.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
from sqlalchemy.engine import Connection

from connectors.sources.canonical import DATASETS, Dataset
from connectors.sources.formats import FileFormat, open_raw, project_default_sql
from connectors.sources.mapping import SourceMapping
from connectors.sql import sql_literal
from staging_models.db import StagingDB
from staging_models.tables import loads
from staging_models.versions import DERIVED_SUFFIX, apply_versions, new_load_id

#: Derivation order: tasks and rate cards refer to projects.
ORDER = ("employees", "projects", "project_tasks", "rate_cards")


def _aggregate_sql(ds: Dataset, view: str, mapping: SourceMapping, fmt: FileFormat) -> str:
    """One canonical text row per key of `ds` from the derived view, defaults applied."""
    keys = [k for k in ds.key if k not in ds.key_nullable]
    d = fmt.defaults
    defaults: dict[str, str] = {}
    if ds.name == "projects":
        for field, setting in (
            ("legal_entity", d.legal_entity),
            ("currency", d.currency),
            ("customer_id", None),
        ):
            sql = project_default_sql("project_code", field, mapping, setting)
            if sql is not None:
                defaults[field] = sql
        defaults["status"] = "'open'"
        defaults["billing_method"] = "'time_and_materials'"
    elif ds.name == "employees":
        if d.legal_entity:
            defaults["legal_entity"] = sql_literal(d.legal_entity)
        defaults["active"] = "'true'"
    elif ds.name == "rate_cards":
        currency = project_default_sql("project_code", "currency", mapping, d.currency)
        if currency is not None:
            defaults["currency"] = currency
    if ds.name == "rate_cards":
        group = ["project_code", "employee_id", "role", "bill_rate", "currency"]
        cols = ", ".join(
            f"coalesce(NULLIF(trim({c}), ''), {defaults[c]}) AS {c}" if c in defaults else c
            for c in group
        )
        firsts = f"""SELECT {", ".join(group)}, min(valid_from) AS valid_from FROM (
                SELECT {cols}, valid_from FROM {view}
                WHERE bill_rate IS NOT NULL AND valid_from IS NOT NULL) r
            GROUP BY {", ".join(group)}"""
        return f"""SELECT project_code, employee_id, role, bill_rate, currency, valid_from,
                CAST(CAST(lead(CAST(valid_from AS DATE)) OVER (
                    PARTITION BY project_code, employee_id, role ORDER BY valid_from)
                    - INTERVAL 1 DAY AS DATE) AS VARCHAR) AS valid_to,
                CAST(row_number() OVER (ORDER BY project_code, employee_id, valid_from) + 1
                     AS INTEGER) AS _row_no
            FROM ({firsts}) f"""
    out = []
    for c in ds.columns:
        if c.name in keys:
            out.append(c.name)
            continue
        value = f"max(NULLIF(trim({c.name}), ''))"
        if c.name in defaults:
            value = f"coalesce({value}, {defaults[c.name]})"
        out.append(f"{value} AS {c.name}")
    not_null = " AND ".join(f"NULLIF(trim({k}), '') IS NOT NULL" for k in keys)
    order = ", ".join(keys)
    return f"""SELECT {", ".join(out)},
            CAST(row_number() OVER (ORDER BY {order}) + 1 AS INTEGER) AS _row_no
        FROM {view} WHERE {not_null} GROUP BY {order}"""


def land_derived(
    db: StagingDB,
    conn: Connection,
    duck: duckdb.DuckDBPyConnection,
    path: Path,
    *,
    file_name: str,
    fmt: FileFormat,
    base: dict,
    workdir: Path,
) -> dict[str, dict[str, int]]:
    """Land the master data `fmt`'s mapping derives from the time-entry file `path`, one load
    per dataset, inside the caller's transaction; returns the counts per dataset."""
    from staging_models.landing import typed_select_sql

    mapping, _ = fmt.source_mapping_for("time_entries", file_name)
    if mapping is None or not mapping.derived:
        return {}
    resolved = fmt.for_file("time_entries", file_name)
    out: dict[str, dict[str, int]] = {}
    for name in ORDER:
        dm = mapping.derived.get(name)
        if dm is None:
            continue
        ds = DATASETS[name]
        view = open_raw(
            duck,
            path,
            ds,
            resolved,
            workdir=workdir,
            view=f"derived_{name}",
            file_name=file_name,
            mapping_override=dm,
        )
        agg = f"derived_{name}_rows"
        duck.execute(
            f"CREATE OR REPLACE TEMP VIEW {agg} AS {_aggregate_sql(ds, view, mapping, resolved)}"
        )
        load_id = new_load_id()
        columns, select = typed_select_sql(ds, agg, load_id)
        db.insert_select(conn, duck, ds.landing_table, columns, select)
        duck.execute(f"DROP VIEW {agg}")
        duck.execute(f"DROP VIEW {view}")
        counts = apply_versions(conn, ds, load_id, defer_to_files=True)
        conn.execute(
            loads.insert().values(
                **{
                    **base,
                    "load_id": load_id,
                    "dataset": name,
                    "source_name": f"{base['source_name']}{DERIVED_SUFFIX}",
                    "size_bytes": 0,
                },
                status="landed",
                rows_read=sum(counts.values()),
                finished_at=base["started_at"],
                message=f"derived from {file_name}",
                **counts,
            )
        )
        out[name] = {"load_id": load_id, **counts}  # type: ignore[dict-item]
    return out
