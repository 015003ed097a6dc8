"""The SQL the mapping compiler and the validation candidates generate, compared with snapshots.

The snapshots in `tests/snapshots/` were written by the code *before* the refactor into
declarative mapping models and per-dataset candidate declarations (issue 13, item 10): this
test is the proof that the refactor changed no byte of the SQL. A deliberate change of the SQL
regenerates them: `STAGEPOST_UPDATE_SNAPSHOTS=1 pytest tests/test_sql_snapshots.py`, and the
diff of the snapshot file is then part of the review.

The mapping SQL must be byte-identical. The candidate SQL was reformatted (one declaration
per dataset instead of one f-string per dataset), so it is compared as text without SQL
comments and with whitespace collapsed, and, as a second opinion, as DuckDB's parse tree
(`json_serialize_sql`, character positions left out): the same tree is the same query.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path

import duckdb

from connectors.sources.canonical import DATASETS
from connectors.sources.mapping import MAPPINGS_DIR, load_mapping, parse_mapping
from staging_models.db import StagingDB
from staging_models.validation import ORDER, _candidate_sql
from tests.support.mapping_examples import MAPPING_EXAMPLES

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("STAGEPOST_UPDATE_SNAPSHOTS") == "1"

#: The mappings the tests use (tests/test_mapping.py), plus one that uses every key.
TEST_MAPPINGS = {
    **MAPPING_EXAMPLES,
    "every_key": """
        name = "every key"
        description = "one rule per feature of the mapping language"
        [time_entries]
        entry_id = { identity = ["employee_id", "work_date", "description"], prefix = "x-" }
        employee_id = { source = "Person", transform = "lower", optional = true }
        employee_name = { concat = ["Last", "First", "Middle"], separator = ", ", optional = true }
        work_date = { source = "Day", transform = "date", format = ["%d/%m/%Y", "%-d.%-m.%Y", "%m/%d/%Y"] }
        approved_at = { coalesce = ["Approved", "Approved On"], transform = "timestamp", timezone = "Europe/London", format = ["%d/%m/%Y %H:%M", "%Y%m%d %H%M"] }
        hours = { source = "Qty", transform = "hours", default = 0 }
        approval_status = { source = "State", transform = "upper", values = { A = "approved", "it's open" = "submitted" }, unmapped = "error" }
        billable = { source = "Bill", values = { 1 = true, 0 = false }, unmapped = "keep", default = false }
        currency = { source = "Cur", transform = "extract", pattern = "^([A-Z]{3}) '", default = "EUR" }
        description = { source = "Notes" }
        bill_rate = { constant = 1.5 }
        deleted = { constant = "it's false" }
        [employees]
        employee_id = "Staff No"
        employee_name = { concat = ["Given", "Family"] }
        active = { source = "Active", values = { y = true }, unmapped = "null" }
    """,
}


def _mappings():
    for path in sorted(MAPPINGS_DIR.glob("*.toml")):
        yield f"shipped:{path.stem}", load_mapping(path)
    for name, text in TEST_MAPPINGS.items():
        yield f"test:{name}", parse_mapping(tomllib.loads(text), f"{name}.toml")


def _mapping_sql() -> dict[str, dict]:
    """Per mapping and dataset: the compiled expression of each canonical column, for a file
    whose header holds every source column (and, for optional ones, a file without them), and
    the source types the XLSX reader uses."""
    out: dict[str, dict] = {}
    for name, m in _mappings():
        for ds, dm in m.datasets.items():
            read = [c for r in dm.rules for c in r.columns()]
            sources = list(dict.fromkeys(s for s, _ in read))
            full = [(s, f"col {i} {s}") for i, s in enumerate(sources)]
            required = [(s, sql) for s, sql in full if not all(o for c, o in read if c == s)]
            entry = {
                "full_header": dm.column_sql(full, "file 'a'.csv", "__sp_row"),
                "source_types": dm.source_types(),
            }
            if required != full:
                entry["required_only"] = dm.column_sql(required, "b.csv", "__sp_row")
            out[f"{name} [{ds}]"] = entry
    return out


def _candidate() -> dict[str, dict]:
    out: dict[str, dict] = {}
    for url in ("duckdb:///:memory:", "postgresql://postgres@127.0.0.1:5432/test"):
        db = StagingDB(url)  # no connection is opened: only the dialect is read
        out[db.dialect] = {
            f"{ds} part {i}/{n}": _candidate_sql(db, DATASETS[ds], (i, n))
            for ds in ORDER
            for i, n in ((0, 1), (2, 3))
        }
        db.engine.dispose()
    return out


def _check(name: str, got: dict) -> None:
    path = SNAPSHOTS / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    want = json.loads(path.read_text(encoding="utf-8"))
    assert sorted(got) == sorted(want)
    for key in want:  # one key at a time, so a failure names the mapping / dataset
        assert got[key] == want[key], key


def test_mapping_sql_is_unchanged() -> None:
    _check("mapping_sql.json", _mapping_sql())


def _normalised(sql: str) -> str:
    """The SQL without comments, runs of whitespace as one space, none inside parentheses."""
    sql = re.sub(r"\s+", " ", re.sub(r"--[^\n]*", "", sql))
    return re.sub(r"\s+\)", ")", re.sub(r"\(\s+", "(", sql)).strip()


def _parse_tree(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    tree = con.execute(
        "SELECT json_serialize_sql(?)", [sql.replace(":latest_today", "DATE '2026-01-01'")]
    ).fetchone()[0]
    assert '"error":false' in tree, tree
    return re.sub(r'"query_location":[0-9]+,?', "", tree)


def test_candidate_sql_is_unchanged() -> None:
    got = _candidate()
    if UPDATE:
        _check("candidate_sql.json", got)
    want = json.loads((SNAPSHOTS / "candidate_sql.json").read_text(encoding="utf-8"))
    con = duckdb.connect()
    assert sorted(got) == sorted(want) == ["duckdb", "postgresql"]
    for dialect, queries in want.items():
        assert sorted(got[dialect]) == sorted(queries)
        for key, sql in queries.items():
            assert _normalised(got[dialect][key]) == _normalised(sql), (dialect, key)
            assert _parse_tree(con, got[dialect][key]) == _parse_tree(con, sql), (dialect, key)
