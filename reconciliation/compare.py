"""Three-way reconciliation of a period: the PSA's latest snapshot, staging, and the ERP.

Pure SQL and Python (no Dagster). Set-based in DuckDB: on DuckDB staging the SQL runs
on the staging connection itself; on PostgreSQL staging the period's rows are pulled
into an in-memory DuckDB through Arrow first (`_inputs`). The SQL is the same.

The three states:
- PSA: current versions of time entries (`stg_time_entries.is_current`), plus rows of
  complete PSA files not landed yet (`psa_files`), plus entries that disappeared from the
  latest *full export*;
- staging: version, contract state, quarantine reasons, and the posting ledger;
- ERP: lines read back through `ErpTarget.read_time_lines` / `read_invoices`, netted per
  entry / invoice (a reversal cancels its line).

Full exports. Incremental exports cannot show a deletion (a hard delete in the PSA just
stops appearing). A load whose file name matches `full_export_pattern` (the asset reads
`STAGEPOST_FULL_EXPORT_PATTERN`, e.g. `time_entries_full_*`) is taken as a complete
snapshot of every entry dated within its range (the one recorded when it was judged at
landing, see `staging_models.full_export`; else dates in its name, else its earliest to
latest work date). The latest such load wins (tombstone loads and dismissed exports aside).
Landing already tombstones what such a file lacks, so what is left `vanished` here is what a
held export lacks, or what a file landed without the setting lacks: a current, not deleted
entry dated in that range, not newer than the export's newest row, which the file lacks and
no later load delivered. Without a pattern, only explicit deletions (`deleted = true`,
tombstones) are seen.

Every entry gets exactly one class (see `_sql` for the classes and their order);
`Reconciliation.lines` holds the entries of the exception classes, the rest are counted in
`kpis`. Key figures (per legal entity and for all):
- straight-through rate: approved entries of the period (current, not deleted) whose current
  version is posted (confirmed ledger line) and was never quarantined, over all of them;
- exceptions by reason: quarantined entries per rule code;
- approved, not posted: entries, hours and amount by days since approval (0-1, 2-7, 8-30, >30);
- invoice-ready backlog: invoices whose lines are all valid and released but whose current
  version is not posted: invoices, lines and amount.
Totals: hours and amount per legal entity and currency, and per project, employee and work
month, in four states (PSA approved, staging valid, ledger confirmed, ERP) with variances.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from config.full_export_range import range_in_name
from connectors.erp.base import ErpTarget
from connectors.sql import sql_literal
from reconciliation import _sql
from reconciliation._inputs import (
    ERP_EXPENSE_LINE_SCHEMA,
    ERP_INVOICE_SCHEMA,
    ERP_TIME_LINE_SCHEMA,
    UNLANDED_SCHEMA,
    FullExport,
    KeyedInputs,
    duck_inputs,
    frame_to_arrow,
    le_filter,
    staging_inputs,
)
from reconciliation.workbook import AGING_BUCKETS
from staging_models.db import StagingDB, set_duckdb_threads
from staging_models.full_export import REASON as VANISHED_REASON

ENTRY_CLASSES = _sql.ENTRY_CLASSES
EXCEPTION_CLASSES = _sql.EXCEPTION_CLASSES
INVOICE_CLASSES = _sql.INVOICE_CLASSES
EXPENSE_CLASSES = _sql.EXPENSE_CLASSES
ALL = "(all)"  # `kpis.legal_entity` of figures over the whole scope

_S, _I = pa.string(), pa.int64()
_HOURS, _MONEY = pa.decimal128(18, 4), pa.decimal128(18, 2)

#: `Reconciliation.lines` (and the staging table `rec_lines`): one row per exception entry.
LINE_SCHEMA = pa.schema(
    [
        ("entry_id", _S),
        ("class", _S),
        ("legal_entity", _S),
        ("employee_id", _S),
        ("employee_name", _S),
        ("project_code", _S),
        ("task_code", _S),
        ("work_date", pa.date32()),
        ("period", _S),
        ("currency", _S),
        ("psa_version", _I),
        ("psa_state", _S),
        ("approval_status", _S),
        ("psa_hours", _HOURS),
        ("psa_amount", _MONEY),
        ("posted_version", _I),
        ("ledger_state", _S),
        ("ledger_hours", _HOURS),
        ("ledger_amount", _MONEY),
        ("erp_lines", _I),
        ("erp_hours", _HOURS),
        ("erp_amount", _MONEY),
        ("hours_variance", _HOURS),
        ("amount_variance", _MONEY),
        ("differing_fields", _S),
        ("rule_codes", _S),
        ("reasons", _S),
        ("approved_at", pa.timestamp("us", tz="UTC")),
        ("age_days", _I),
        ("aging_bucket", _S),
        ("description", _S),
        ("source_file", _S),  # file and row: quarantined_without_key only
        ("row_no", _I),
    ]
)
LINE_COLUMNS: tuple[str, ...] = tuple(LINE_SCHEMA.names)

#: `Reconciliation.invoices`: one row per invoice of the period, with its class.
INVOICE_SCHEMA = pa.schema(
    [
        ("invoice_id", _S),
        ("class", _S),
        ("legal_entity", _S),
        ("project_code", _S),
        ("customer_id", _S),
        ("currency", _S),
        ("issue_date", pa.date32()),
        ("psa_version", _I),
        ("lines", _I),
        ("valid_lines", _I),
        ("quarantined_lines", _I),
        ("released_lines", _I),
        ("psa_amount", _MONEY),
        ("posted_version", _I),
        ("ledger_state", _S),
        ("ledger_amount", _MONEY),
        ("erp_documents", _I),
        ("erp_amount", _MONEY),
        ("erp_status", _S),
        ("amount_variance", _MONEY),
        ("differing_fields", _S),
        ("rule_codes", _S),
        ("reasons", _S),
        ("age_days", _I),
        ("backlog", pa.bool_()),  # ready (valid, released) and its version not posted
    ]
)


#: `Reconciliation.expenses`: one row per expense of the period, with its class.
EXPENSE_SCHEMA = pa.schema(
    [
        ("expense_id", _S),
        ("class", _S),
        ("legal_entity", _S),
        ("employee_id", _S),
        ("project_code", _S),
        ("category", _S),
        ("currency", _S),
        ("expense_date", pa.date32()),
        ("psa_version", _I),
        ("psa_state", _S),
        ("approval_status", _S),
        ("psa_amount", _MONEY),
        ("psa_rebill_amount", _MONEY),
        ("reimbursable", pa.bool_()),
        ("receipt_ref", _S),
        ("posted_version", _I),
        ("ledger_state", _S),
        ("ledger_amount", _MONEY),
        ("erp_lines", _I),
        ("erp_amount", _MONEY),
        ("erp_rebill_amount", _MONEY),
        ("amount_variance", _MONEY),
        ("differing_fields", _S),
        ("rule_codes", _S),
        ("reasons", _S),
        ("age_days", _I),
    ]
)


@dataclass(frozen=True)
class Period:
    """What to reconcile: work / issue dates from..to (inclusive), legal entities (empty = all)."""

    date_from: date
    date_to: date
    legal_entities: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.date_from > self.date_to:
            raise ValueError(f"period starts {self.date_from} after it ends {self.date_to}")

    def label(self) -> str:
        les = ", ".join(self.legal_entities) if self.legal_entities else "all legal entities"
        return f"{self.date_from:%Y-%m-%d} to {self.date_to:%Y-%m-%d}, {les}"


@dataclass
class Reconciliation:
    """The result: exception lines, invoices, totals and key figures (see `kpis`)."""

    period: Period
    generated_at: datetime
    lines: pa.Table  # LINE_COLUMNS, entries of EXCEPTION_CLASSES, ordered by class and id
    invoices_table: pa.Table  # one row per invoice in scope, with its class
    totals_table: pa.Table  # dimension, legal_entity, currency, member, four states, variances
    #: Long form: legal_entity ('(all)' or one), currency (None: over all currencies, no
    #: amount; else that currency's figures), kind (kpi | class | aging | reason |
    #: invoice_class), name, entries, hours, amount (Decimal or None), value (float or None).
    kpis: pd.DataFrame
    full_export: FullExport | None = None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    exact_path_entries: int = 0  # entries the line-by-line path classified (see `_sql`)
    #: One row per expense of the period (EXPENSE_SCHEMA), its class and amounts.
    expenses_table: pa.Table = field(default_factory=EXPENSE_SCHEMA.empty_table)

    @cached_property
    def totals(self) -> pd.DataFrame:
        """`totals_table` as pandas (Decimal values): converted on first use only."""
        return self.totals_table.to_pandas()

    @cached_property
    def expenses(self) -> pd.DataFrame:
        return self.expenses_table.to_pandas(integer_object_nulls=True)

    @cached_property
    def invoices(self) -> pd.DataFrame:
        return self.invoices_table.to_pandas(integer_object_nulls=True)  # versions stay ints

    def _all_currencies(self) -> pd.DataFrame:
        return self.kpis[self.kpis["currency"].isna()]

    def counts(self, kind: str = "class", legal_entity: str = ALL) -> dict[str, int]:
        """Entries (or invoices) per class / bucket / rule code, over all currencies."""
        k = self._all_currencies()
        k = k[(k["kind"] == kind) & (k["legal_entity"] == legal_entity)]
        return dict(zip(k["name"], k["entries"].astype(int), strict=True))

    def kpi(self, name: str, legal_entity: str = ALL) -> pd.Series:
        """A key figure over all currencies: entries and hours (its amounts: `amounts`)."""
        k = self._all_currencies()
        row = k[(k["kind"] == "kpi") & (k["name"] == name) & (k["legal_entity"] == legal_entity)]
        if row.empty:
            raise KeyError(f"no key figure {name!r} for {legal_entity}")
        return row.iloc[0]

    def amounts(self, name: str, kind: str = "kpi", legal_entity: str = ALL) -> dict:
        """A figure's amounts per currency ({'EUR': Decimal(...)}): never one sum of several."""
        return kpi_amounts(self.kpis, kind, name, legal_entity)

    def lines_frame(self) -> pd.DataFrame:
        return self.lines.to_pandas(integer_object_nulls=True)

    def kpi_frame(self) -> pd.DataFrame:
        """`kpis` plus a `text` column and `info` rows (period, scope, generated at, notes):
        everything a workbook needs besides lines, totals and invoices, in one storable frame."""
        p = self.period
        info = [
            ("period", p.label()),
            ("date_from", p.date_from.isoformat()),
            ("date_to", p.date_to.isoformat()),
            ("legal_entities", ",".join(p.legal_entities)),
            ("generated_at", self.generated_at.isoformat()),
            *((f"note_{i:03d}", n) for i, n in enumerate(self.notes)),
        ]
        extra = pd.DataFrame(
            {
                "legal_entity": ALL,
                "currency": None,
                "kind": "info",
                "name": [k for k, _ in info],
                "entries": 0,
                "hours": None,
                "amount": None,
                "value": float("nan"),
                "text": [v for _, v in info],
            }
        )
        return pd.concat([self.kpis.assign(text=None), extra], ignore_index=True)


def kpi_amounts(kpis: pd.DataFrame, kind: str, name: str, legal_entity: str = ALL) -> dict:
    """Amounts of one figure per currency, from a `Reconciliation.kpis`-shaped frame."""
    k = kpis[
        (kpis["kind"] == kind)
        & (kpis["name"] == name)
        & (kpis["legal_entity"] == legal_entity)
        & kpis["currency"].notna()
    ]
    return {
        cur: amount
        for cur, amount in sorted(zip(k["currency"], k["amount"], strict=True))
        if amount is not None and not (isinstance(amount, float) and pd.isna(amount))
    }


def find_full_export(db: StagingDB, pattern: str | None) -> FullExport | None:
    """The latest landed time-entry load whose file name matches `pattern` (glob), if any.

    Its range is the one recorded when it was judged at landing (see
    `staging_models.full_export`), else the dates in its file name, else its own first to
    last work date. Tombstone loads and exports an operator dismissed are not candidates.
    """
    if not pattern:
        return None
    loads = db.query_df(
        """SELECT l.load_id, l.file_name, l.started_at, f.status, f.date_from, f.date_to,
                  f.vanished_entries
           FROM loads l LEFT JOIN full_exports f ON f.load_id = l.load_id
           WHERE l.dataset = 'time_entries' AND l.status = 'landed'
             AND l.source_name <> :derived AND COALESCE(f.status, '') <> 'dismissed'""",
        {"derived": VANISHED_REASON},
    )
    match = loads[loads["file_name"].str.match(fnmatch.translate(pattern))]
    if match.empty:
        return None
    last = match.sort_values(["started_at", "load_id"]).iloc[-1]
    judged = isinstance(last["status"], str)
    if judged and last["date_from"] is not None and not pd.isna(last["date_from"]):
        lo, hi = last["date_from"], last["date_to"]
    elif range_in_name(last["file_name"]):
        lo, hi = range_in_name(last["file_name"])
    else:
        span = db.query_df(
            """SELECT MIN(work_date) AS lo, MAX(work_date) AS hi FROM land_time_entries
               WHERE load_id = :l""",
            {"l": last["load_id"]},
        ).iloc[0]
        lo, hi = span["lo"], span["hi"]
    if lo is None or pd.isna(lo):
        return None
    return FullExport(
        last["load_id"],
        last["file_name"],
        last["started_at"],
        lo,
        hi,
        last["status"] if judged else None,
        int(last["vanished_entries"]) if judged else None,
    )


def _run(duck: duckdb.DuckDBPyConnection, sql: str, params: dict) -> None:
    names = set(re.findall(r"\$([a-z_]+)", sql))
    duck.execute(sql, {n: params[n] for n in names})


def reconcile(
    db: StagingDB,
    erp: ErpTarget | None,
    period: Period,
    *,
    now: datetime | None = None,
    erp_time_lines: pd.DataFrame | pa.Table | None = None,
    erp_invoices: pd.DataFrame | pa.Table | None = None,
    erp_expense_lines: pd.DataFrame | pa.Table | None = None,
    unlanded: pa.Table | None = None,
    full_export_pattern: str | None = None,
    notes: Sequence[str] = (),
) -> Reconciliation:
    """Reconcile `period` across the PSA, staging and the ERP.

    The ERP is read through `erp` unless its answers are passed in (`erp_time_lines`,
    `erp_invoices`: frames with `TIME_LINE_COLUMNS` / `INVOICE_COLUMNS`). `unlanded` holds
    rows of complete PSA files not landed yet (`psa_files.unlanded_rows`); `notes` are
    added to the result's (what could not be compared, say). `now` dates the ages (default:
    the current time).
    """
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if erp_time_lines is None:
        if erp is None:
            raise ValueError("pass an ErpTarget or the ERP's time lines")
        erp_time_lines = erp.read_time_lines_arrow(period.date_from, period.date_to)
    if erp_invoices is None and erp is not None:
        erp_invoices = erp.read_invoices(period.date_from, period.date_to)
    if erp_expense_lines is None and erp is not None:
        erp_expense_lines = erp.read_expense_lines(period.date_from, period.date_to)
    timings["erp_read"] = time.perf_counter() - t0
    arrow = {
        "r_erp": frame_to_arrow(erp_time_lines, ERP_TIME_LINE_SCHEMA),
        "r_inv_erp": frame_to_arrow(erp_invoices, ERP_INVOICE_SCHEMA),
        "r_exp_erp": frame_to_arrow(erp_expense_lines, ERP_EXPENSE_LINE_SCHEMA),
        "r_unlanded": (unlanded if unlanded is not None else UNLANDED_SCHEMA.empty_table()).cast(
            UNLANDED_SCHEMA
        ),
    }
    full = find_full_export(db, full_export_pattern)
    les = tuple(period.legal_entities)
    fmt = {
        "le": le_filter("legal_entity", les),
        "le_p": le_filter("p.legal_entity", les),
        "le_u": le_filter("pr.legal_entity", les),
    }
    params = {
        "f": period.date_from,
        "t": period.date_to,
        "now": now,
        "full_file": full.file_name if full else "",
    }
    timings["prepare"] = time.perf_counter() - t0 - timings["erp_read"]
    t1 = time.perf_counter()
    fmt["newer"] = _sql.UNLANDED_NEWER if arrow["r_unlanded"].num_rows else "TRUE"
    keyed = KeyedInputs()
    inputs = staging_inputs(
        period.date_from, period.date_to, full, les, unlanded=arrow["r_unlanded"].num_rows > 0
    )
    with duck_inputs(db, inputs, arrow, keyed) as duck:
        timings["staging_read"] = time.perf_counter() - t1
        try:
            _classify(duck, arrow["r_erp"], les, fmt, params, timings, keyed)
            t = time.perf_counter()
            lines, totals, invoices, kpis, exact = _fetch(duck)
            expenses = (
                duck.sql(
                    f"SELECT {', '.join(EXPENSE_SCHEMA.names)} FROM rc_expenses "
                    "ORDER BY class, expense_id"
                )
                .to_arrow_table()
                .cast(EXPENSE_SCHEMA)
            )
            timings["fetch"] = time.perf_counter() - t
        finally:
            for name in _TEMPS:
                duck.execute(f"DROP TABLE IF EXISTS {name}")
            duck.unregister("rc_e")
    timings["total"] = time.perf_counter() - t0
    notes = [*_notes(full, full_export_pattern, arrow["r_unlanded"]), *notes]
    return Reconciliation(
        period=period,
        generated_at=now,
        lines=lines,
        invoices_table=invoices,
        totals_table=totals,
        kpis=_tidy_kpis(kpis.to_pandas()),
        full_export=full,
        notes=notes,
        timings=timings,
        exact_path_entries=int(exact),
        expenses_table=expenses,
    )


_TEMPS = (
    "rc_u",
    "rc_k",
    "rc_cube",
    "rc_plain",
    "rc_sync",
    "rc_l",
    "rc_s",
    "rc_vx",
    "rc_psa",
    "rc_lines",
    "rc_totals",
    "rc_invoices",
    "rc_expenses",
    "rc_kpis",
)


@contextmanager
def _single_thread(duck: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Statements over a few thousand rows: one thread avoids the scheduling cost of two.
    On a raw connection (on PostgreSQL staging, the in-memory DuckDB `StagingDB` does not
    own), so not `StagingDB.threads`."""
    before = set_duckdb_threads(duck, 1)
    try:
        yield
    finally:
        set_duckdb_threads(duck, before)


def _classify(
    duck: duckdb.DuckDBPyConnection,
    erp: pa.Table,
    les: Sequence[str],
    fmt: dict[str, str],
    params: dict,
    timings: dict[str, float],
    keyed: KeyedInputs,
) -> None:
    """Run the fast path, then the exact path (see `_sql`), into the rc_* temporary tables."""

    def step(name: str, sql: str) -> None:
        t = time.perf_counter()
        _run(duck, sql.format(**fmt), params)
        timings[name] = time.perf_counter() - t

    step("unlanded", _sql.UNLANDED)
    step("fast", _sql.FAST)
    t = time.perf_counter()
    keyed.load("rc_k")  # the exact path reads the `*_all` inputs for these entries only
    timings["exact_read"] = time.perf_counter() - t
    t = time.perf_counter()
    duck.register("rc_e", _erp_lines_of(duck, erp, les))
    timings["exact_erp"] = time.perf_counter() - t
    step("cube", _sql.CUBE)
    step("plain", _sql.PLAIN)
    step("exact_ledger", _sql.K_LEDGER)
    step("exact_psa", _sql.K_PSA)
    with _single_thread(duck):
        # A few valid entries may need their validated row from the whole table; usually
        # none do, and that scan is skipped.
        missing = duck.sql(f"SELECT COUNT(*) FROM ({_sql.K_VALID_X_ENTRIES})").fetchall()[0][0]
        fmt["any_x"] = "TRUE" if missing else "FALSE"
        step("exact_valid_x", _sql.K_VALID_X)
        step("psa", _sql.PSA)
        step("sync", _sql.SYNC)
        step("lines", _sql.LINES)
        step("keyless", _sql.KEYLESS)
        step("totals", _sql.TOTALS)
        if _any_invoices(duck):
            step("invoices", _sql.INVOICES)
        else:  # a source without invoice proposals: nothing to plan and run
            duck.register("rc_invoices_empty", INVOICE_SCHEMA.empty_table())
            duck.execute("CREATE OR REPLACE TEMP TABLE rc_invoices AS FROM rc_invoices_empty")
            duck.unregister("rc_invoices_empty")
        step("expenses", _sql.EXPENSES)
        step("kpis", "CREATE OR REPLACE TEMP TABLE rc_kpis AS " + _sql.KPIS)


def _any_invoices(duck: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        duck.sql(
            """SELECT EXISTS (FROM r_inv_psa) OR EXISTS (FROM r_inv_ledger)
                      OR EXISTS (FROM r_inv_erp)"""
        ).fetchall()[0][0]
    )


def _fetch(duck: duckdb.DuckDBPyConnection):
    """Exception lines, totals, invoices and key figures out of DuckDB, as Arrow."""
    classes = ", ".join(sql_literal(c) for c in EXCEPTION_CLASSES)
    lines = (
        duck.sql(
            f"""SELECT {", ".join(LINE_COLUMNS)} FROM rc_lines WHERE class IN ({classes})
                ORDER BY class, entry_id, source_file, row_no"""
        )
        .to_arrow_table()
        .cast(LINE_SCHEMA)
    )
    totals = duck.sql("SELECT * FROM rc_totals").to_arrow_table()
    invoices = (
        duck.sql(
            f"SELECT {', '.join(INVOICE_SCHEMA.names)} FROM rc_invoices ORDER BY class, invoice_id"
        )
        .to_arrow_table()
        .cast(INVOICE_SCHEMA)
    )
    kpis = duck.sql(
        "SELECT * FROM rc_kpis ORDER BY legal_entity, kind, name, currency NULLS FIRST"
    ).to_arrow_table()
    exact = duck.sql("SELECT COUNT(*) FROM rc_k").fetchall()[0][0]
    return lines, totals, invoices, kpis, exact


def _erp_lines_of(
    duck: duckdb.DuckDBPyConnection, erp: pa.Table, legal_entities: Sequence[str]
) -> pa.Table:
    """The ERP lines of the exact-path entries (`rc_k`), cut out of the Arrow table directly:
    a DuckDB scan would convert every line of every column to find a few percent of them."""
    keys = duck.sql("SELECT entry_id FROM rc_k").to_arrow_table().column("entry_id")
    keys = keys.combine_chunks()
    entry = erp.column("entry_id")
    mask = pc.is_in(entry, value_set=keys)
    if entry.null_count:  # lines without an entry id go by '?' + external id (see `_sql`)
        orphan = pc.binary_join_element_wise("?", erp.column("external_id"), "")
        mask = pc.or_(mask, pc.and_(pc.is_null(entry), pc.is_in(orphan, value_set=keys)))
    if legal_entities:
        mask = pc.and_(mask, pc.is_in(erp.column("legal_entity"), pa.array(list(legal_entities))))
    return erp.filter(pc.fill_null(mask, False))


def _tidy_kpis(kpis: pd.DataFrame) -> pd.DataFrame:
    kpis["entries"] = kpis["entries"].fillna(0).astype("int64")
    kpis["value"] = kpis["value"].astype("float64")
    for col in ("hours", "amount", "currency"):
        kpis[col] = kpis[col].astype(object).where(kpis[col].notna(), None)
    # Every aging bucket is present (zero if empty, over all currencies), per legal entity
    # that has figures.
    les = kpis["legal_entity"].unique()
    grid = pd.MultiIndex.from_product([les, AGING_BUCKETS], names=["legal_entity", "name"])
    aging = kpis[(kpis["kind"] == "aging") & kpis["currency"].isna()]
    missing = grid.difference(aging.set_index(["legal_entity", "name"]).index)
    if len(missing):
        add = missing.to_frame(index=False).assign(
            currency=None, kind="aging", entries=0, hours=None, amount=None, value=float("nan")
        )
        kpis = pd.concat([kpis, add[kpis.columns]], ignore_index=True)
    order = kpis.assign(_c=kpis["currency"].fillna(""))
    order = order.sort_values(["legal_entity", "kind", "name", "_c"], ignore_index=True)
    return order.drop(columns=["_c"])


def _notes(full: FullExport | None, pattern: str | None, unlanded: pa.Table) -> list[str]:
    notes = []
    if full is not None:
        notes.append(
            f"Deleted-in-PSA detection: full export {full.file_name} (load {full.load_id}), "
            f"covering work dates {full.work_date_min} to {full.work_date_max}."
        )
        if full.status == "held":
            notes.append(
                f"Full export {full.file_name} lacks {full.vanished_entries} entries, more than "
                "the allowed share: they are shown as deleted in the PSA but not tombstoned "
                "until confirm_full_export_job applies or dismisses it."
            )
    elif pattern:
        notes.append(
            f"Deleted-in-PSA detection: no landed time-entry file matches {pattern!r}; "
            "only explicit deletions are seen."
        )
    else:
        notes.append(
            "Deleted-in-PSA detection: off (set STAGEPOST_FULL_EXPORT_PATTERN to the name "
            "pattern of full exports); only explicit deletions are seen."
        )
    if unlanded.num_rows:
        files = sorted(set(unlanded.column("file_name").to_pylist()))
        notes.append(f"PSA files not landed yet, compared as not_yet_staged: {', '.join(files)}.")
    return notes
