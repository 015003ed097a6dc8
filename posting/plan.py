"""The plan of a posting window, computed set-based in the staging database.

desired = current versions the contracts validated (stg state `valid`);
live    = ledger posts the ERP holds (sent or confirmed) that no live reversal cancels.

- a desired version not yet live is posted;
- a live line whose entry moved on to a newer valid version, or whose current
  version is `not_postable` (deleted, no longer approved), is reversed; the newer
  version (if any) is posted beside it: the ERP never sees an edit;
- a current version that is quarantined or pending changes nothing: the old line
  stays (reconciliation flags the difference) until the contracts release it.

A window's scope (legal entities, dates) selects entries and invoices, not lines: one
is in scope when its live line or its new version is, and then all its planned lines
go, whatever their own entity or date (`pair_scoped`). Filtering lines would split a
correction: the new post of an entry moved into the scope without the reversal of its
old line (counted twice), or the reversal without the post (gone from the ERP).

Every planned line is booked into its natural period (work or issue month; a
reversal: the period of the line it reverses). If the ERP has that period closed,
policy `next_open` books it into the next open period of the legal entity and
`hold` keeps it in the ledger as `held` with the reason. A correction is held as
a pair: if one half is held, so is the other (with that half's reason), so the ERP
never counts an entry twice or not at all because of a closed period.

The plan lands in temporary tables (`plan_lines`, `plan_invoices`,
`plan_invoice_lines`) of the caller's connection; `merge_plan` writes them into
the ledgers, a dry run just reads and rolls them back. A window defers its new
time lines: `PendingLines` writes each batch into the ledger just before the batch
is sent (the sending pipeline hides that write behind the ERP's work), so a plan of
many lines is not written twice before the first line reaches the ERP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from connectors.erp.base import ErpTarget
from connectors.erp.documents import EXPENSE_LINE, INVOICE, INVOICE_LINE, TIME_LINE, Document
from connectors.erp.periods import month_end
from connectors.sql import fetch_frame, load_temp, read_frame
from posting.batches import open_batch
from staging_models.billing_holds import BILLING_HOLD_PREFIX, HELD_PROJECTS
from staging_models.db import SCRATCH_STATISTICS_TARGET, analyze
from staging_models.ledger_tables import ledger_order

ClosedPeriodPolicy = Literal["next_open", "hold"]
#: What a billing hold on a project does to its time and expense lines (its invoices are
#: always held).
BillingHoldWork = Literal["post", "hold"]
#: How far past a closed period `next_open` looks for an open one.
NEXT_OPEN_HORIZON_MONTHS = 12
MAX_EXTERNAL_ID = 64


def external_id(doc: str, ident: str, version: int, kind: str) -> str:
    """Deterministic ERP external ID, e.g. `te:TE1:v2:post`; ids over 64 chars use md5(ident).

    `doc` is `te` (time line), `inv` (invoice) or `exp` (expense line); `kind` is `post` or
    `rev`. Mirrors
    `external_id_sql`, which the plan uses.
    """
    import hashlib

    plain = f"{doc}:{ident}:v{version}:{kind}"
    if len(plain) <= MAX_EXTERNAL_ID:
        return plain
    return f"{doc}~{hashlib.md5(ident.encode()).hexdigest()}:v{version}:{kind}"


def external_id_sql(doc: str, ident: str, version: str, kind: str) -> str:
    # ':' || 'v', not ':v': text() would read ":v" inside a literal as a bind parameter.
    ver = f"CAST({version} AS VARCHAR)"
    tail = f"':' || 'v' || {ver} || ':' || '{kind}'"
    plain = f"'{doc}:' || {ident} || {tail}"
    # The length of `plain` from its variable parts: building the string only to measure it
    # doubled its cost (a 50,000-line plan computes every id).
    fixed = len(f"{doc}::v:{kind}")
    too_long = f"length({ident}) + length({ver}) > {MAX_EXTERNAL_ID - fixed}"
    return f"CASE WHEN {too_long} THEN '{doc}~' || md5({ident}) || {tail} ELSE {plain} END"


def period_sql(conn: Connection, date_expr: str) -> str:
    """'YYYY-MM' of a date, in the connection's dialect."""
    if conn.dialect.name == "duckdb":
        return f"strftime({date_expr}, '%Y-%m')"
    return f"to_char({date_expr}, 'YYYY-MM')"


def temp_table(conn: Connection, name: str, select_sql: str, params: dict | None = None) -> None:
    """CREATE TEMP TABLE name AS select: kept across commits until `drop_plan` (or a rollback
    of the creating transaction), so a window can send from it batch by batch."""
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    conn.execute(sa.text(f"CREATE TEMP TABLE {name} AS {select_sql}"), params or {})


PLAN_TABLES = (
    "plan_lines",
    "plan_invoices",
    "plan_invoice_lines",
    "plan_periods",
    "plan_groups",
    "plan_expenses",
)

#: The plan's lines counted and summed per document, legal entity, project, currency, natural
#: period, kind and state: what the periods, the counts and the summary of a window read
#: (`plan_counts`, `posting.preview.plan_summary`), from one scan of the plan instead of one
#: each (at 1M entries each scan of plan_lines took 0.3-0.9 s on PostgreSQL).
_PLAN_GROUPS = """
    SELECT 'time_line' AS document, legal_entity, project_code, currency, natural_period, kind,
           state, COUNT(*) AS n, SUM(hours) AS hours, SUM(amount) AS amount
    FROM plan_lines
    GROUP BY legal_entity, project_code, currency, natural_period, kind, state
    UNION ALL
    SELECT 'invoice', legal_entity, project_code, currency, natural_period, kind, state,
           COUNT(*), NULL, SUM(total_amount)
    FROM plan_invoices
    GROUP BY legal_entity, project_code, currency, natural_period, kind, state
    UNION ALL
    SELECT 'expense_line', legal_entity, project_code, currency, natural_period, kind, state,
           COUNT(*), NULL, SUM(amount)
    FROM plan_expenses
    GROUP BY legal_entity, project_code, currency, natural_period, kind, state
"""


#: The columns later statements of a window group, join and filter the plan tables on (by
#: batch; with the ledgers by external id, entry or invoice): a full ANALYZE of a 50,000-line
#: plan took 1 s, these at `SCRATCH_STATISTICS_TARGET` 0.04 s.
_PLAN_ANALYZED = (
    "plan_lines (batch_no, external_id, entry_id, state)",
    "plan_invoices (batch_no, external_id, invoice_id, kind, state)",
    "plan_invoice_lines (invoice_external_id, line_no)",
    "plan_periods",
    "plan_expenses (batch_no, external_id, expense_id, state)",
)


def drop_plan(conn: Connection) -> None:
    """Drop the plan's temporary tables (a pooled connection would keep them)."""
    with conn.begin():
        for name in PLAN_TABLES:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


@dataclass(frozen=True)
class Scope:
    """Which entries and invoices a window covers: legal entities (empty = all) and a date
    range (inclusive).

    It selects documents, not lines: an entry (invoice) is in scope when its posted version
    (a live line) or its new version is, and then the plan takes all its lines, so a
    correction's reversal and new post go together or are held together (`pair_scoped`).
    """

    legal_entities: tuple[str, ...] = ()
    date_from: date | None = None
    date_to: date | None = None

    @property
    def is_all(self) -> bool:
        return not (self.legal_entities or self.date_from or self.date_to)

    def sql(self, alias: str, date_col: str) -> tuple[str, dict]:
        """A WHERE fragment and its parameters for rows `alias` dated by `date_col`."""
        parts, params = ["TRUE"], {}
        if self.legal_entities:
            names = []
            for i, le in enumerate(self.legal_entities):
                params[f"scope_le{i}"] = le
                names.append(f":scope_le{i}")
            parts.append(f"{alias}.legal_entity IN ({', '.join(names)})")
        if self.date_from:
            parts.append(f"{alias}.{date_col} >= :scope_from")
            params["scope_from"] = self.date_from
        if self.date_to:
            parts.append(f"{alias}.{date_col} <= :scope_to")
            params["scope_to"] = self.date_to
        return " AND ".join(parts), params


# -- time lines and expense lines -----------------------------------------------------------------


@dataclass(frozen=True)
class PostedLines:
    """A document posted one line per version of a validated row (time entries, expenses): where
    its versions, valid rows, ledger and plan are, and which fields a reversal negates. Its
    plan and ledger columns are the document's fields in ledger order (`ledger_order`)."""

    doc: str  # the external ID's prefix (`external_id`)
    document: Document
    versions: str  # stg_* table
    validated: str  # validated_* table: `ident`, `version` and the document's fields
    ident: str  # entry_id, expense_id
    version: str  # the document's version field: entry_version, expense_version
    date_col: str  # the date its natural period and the window's scope go by
    ledger: str
    plan: str
    negated: tuple[str, ...]  # opposite on a reversal

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields after the identity (external id, kind, ident, version, reversal link)."""
        return ledger_order(self.document)[5:]


TIME_LINES = PostedLines(
    "te",
    TIME_LINE,
    "stg_time_entries",
    "validated_time_entries",
    "entry_id",
    "entry_version",
    "work_date",
    "posting_ledger",
    "plan_lines",
    ("hours", "amount"),
)
EXPENSE_LINES = PostedLines(
    "exp",
    EXPENSE_LINE,
    "stg_expenses",
    "validated_expenses",
    "expense_id",
    "expense_version",
    "expense_date",
    "expense_ledger",
    "plan_expenses",
    ("amount", "tax_amount", "rebill_amount"),
)

_LIVE_POSTS = """
    SELECT l.* FROM {ledger} l
    WHERE l.kind = 'post' AND l.state IN ('sent', 'confirmed')
      AND NOT EXISTS (SELECT 1 FROM {ledger} r
                      WHERE r.kind = 'reversal' AND r.reverses_external_id = l.external_id
                        AND r.state IN ('sent', 'confirmed'))
"""


def pair_scoped(ctes: str, plan: str, scope: Scope, group: str, date_col: str) -> str:
    """`WITH ctes` (which define `live`) then the rows of the `plan` SELECT of the documents
    (`group`: entry_id, invoice_id) in scope: those with a planned line or a live line in
    scope. All lines of such a document are kept, whatever their own legal entity or date:
    a reversal and the post beside it go whole or not at all (or are held whole, see
    `_apply_policy`). An unscoped window reads the plan once, unfiltered."""
    if scope.is_all:
        return f"WITH {ctes} {plan}"
    p_where, _ = scope.sql("s", date_col)
    l_where, _ = scope.sql("l", date_col)
    # A live line not reversed by the plan (the current version's, left by a window that
    # split a pair before this rule) counts too; looked up only for documents the plan
    # reverses, and `live` is inlined, not materialized: a tuplestore of every live line
    # made the plan twice as slow on PostgreSQL.
    return f"""WITH {ctes}, plan AS ({plan})
        SELECT * FROM plan
        WHERE {group} IN (
            SELECT s.{group} FROM plan s WHERE {p_where}
            UNION SELECT l.{group} FROM live l
            WHERE {l_where}
              AND l.{group} IN (SELECT r.{group} FROM plan r WHERE r.kind = 'reversal'))"""


def _plan_lines_sql(
    conn: Connection,
    scope: Scope,
    lines: PostedLines = TIME_LINES,
    *,
    reversals: str | None = None,
) -> tuple[str, dict]:
    """The plan of `lines`: posts of new versions and reversals of live lines, in scope.
    `reversals`: a table that holds the plan's reversals already (`_reversals_sql`), or ""
    when there are none (then the plan is a plain query of posts, which PostgreSQL sorts for
    the batch numbering in its parallel workers: a UNION made it sort in the leader alone)."""
    _, params = scope.sql("s", lines.date_col)
    ident, ver = lines.ident, lines.version
    post_id = external_id_sql(lines.doc, f"v.{ident}", "v.version", "post")
    posted = ", ".join(
        f"{period_sql(conn, f'v.{lines.date_col}')} AS natural_period"
        if f == "period"
        else f"v.{f}"
        for f in lines.fields
    )
    ctes = f"""{_cur_live(lines)},
        posts AS (
            SELECT {post_id} AS external_id, 'post' AS kind, v.{ident},
                   v.version AS {ver}, CAST(NULL AS VARCHAR) AS reverses_external_id,
                   {posted}
            FROM {lines.validated} v
            JOIN cur c ON c.{ident} = v.{ident} AND c.version = v.version AND c.state = 'valid'
        )"""
    # Not live yet: looked up by entry and version, not by the computed external id (a
    # function of the two), so PostgreSQL builds each id once, for the output only.
    if reversals is None:
        reversed_rows = _reversal_rows(lines)
    else:
        reversed_rows = f"SELECT * FROM {reversals}" if reversals else ""
    plan = f"""
        SELECT p.* FROM posts p
        WHERE NOT EXISTS (SELECT 1 FROM {lines.ledger} x
                          WHERE x.{ident} = p.{ident} AND x.{ver} = p.{ver}
                            AND x.kind = 'post' AND x.state IN ('sent', 'confirmed'))
        """
    if reversed_rows:
        plan += f"UNION ALL {reversed_rows}"
    return pair_scoped(ctes, plan, scope, ident, lines.date_col), params


def _cur_live(lines: PostedLines) -> str:
    """CTEs `cur` (the current versions) and `live` (the live posts) of `lines`."""
    return f"""
        cur AS NOT MATERIALIZED (  -- inlined: PostgreSQL cannot estimate a CTE scan
            SELECT row_key AS {lines.ident}, version, state FROM {lines.versions}
            WHERE is_current
        ),
        live AS NOT MATERIALIZED ({_LIVE_POSTS.format(ledger=lines.ledger)})"""


def _reversals_sql(lines: PostedLines) -> str:
    """The plan's reversals of `lines` alone, in the plan's columns: a window computes them
    first (`build_plan`), so that a plan without reversals is a plain query of posts."""
    return f"WITH {_cur_live(lines)} {_reversal_rows(lines)}"


def _reversal_rows(lines: PostedLines) -> str:
    """The reversals of live lines (CTE `live`) whose entry moved on to a newer valid version,
    or whose current version (CTE `cur`) is not postable."""
    ident, ver = lines.ident, lines.version
    rev_id = external_id_sql(lines.doc, f"l.{ident}", f"l.{ver}", "rev")
    reversed_ = ", ".join(
        f"'Reversal of ' || l.external_id AS {f}"
        if f == "description"
        else f"-l.{f} AS {f}"
        if f in lines.negated
        else f"l.{f}"
        for f in lines.fields
    )
    return f"""
        SELECT {rev_id} AS external_id, 'reversal' AS kind, l.{ident}, l.{ver},
               l.external_id AS reverses_external_id, {reversed_}
        FROM live l JOIN cur c ON c.{ident} = l.{ident}
        WHERE (c.version > l.{ver} AND c.state IN ('valid', 'not_postable'))
               OR (c.version = l.{ver} AND c.state = 'not_postable')
        """


# -- invoices -------------------------------------------------------------------------------------


def _plan_invoices_sql(conn: Connection, scope: Scope) -> tuple[str, dict]:
    _, params = scope.sql("s", "issue_date")
    post_id = external_id_sql("inv", "h.invoice_id", "h.invoice_version", "post")
    rev_id = external_id_sql("inv", "l.invoice_id", "l.invoice_version", "rev")
    ctes = f"""
        cur AS NOT MATERIALIZED (
            SELECT invoice_id, line_no, version, state FROM stg_invoices
            WHERE is_current AND invoice_id IS NOT NULL
        ),
        inv AS (  -- one row per invoice: its version and how ready its lines are
            SELECT invoice_id, CAST(SUM(version) AS INTEGER) AS invoice_version,
                   COUNT(*) AS n_lines,
                   SUM(CASE WHEN state = 'valid' THEN 1 ELSE 0 END) AS n_valid,
                   SUM(CASE WHEN state = 'not_postable' THEN 1 ELSE 0 END) AS n_not_postable
            FROM cur GROUP BY invoice_id
        ),
        vl AS (
            SELECT v.* FROM validated_invoice_lines v
            JOIN cur c ON c.invoice_id = v.invoice_id AND c.line_no = v.line_no
                      AND c.version = v.version AND c.state = 'valid'
        ),
        hdr AS (
            SELECT vl.invoice_id, MIN(vl.legal_entity) AS legal_entity,
                   MIN(vl.project_code) AS project_code, MIN(vl.customer_id) AS customer_id,
                   MIN(vl.currency) AS currency, MIN(vl.issue_date) AS issue_date,
                   MIN(vl.due_date) AS due_date, SUM(vl.amount) AS total_amount,
                   COUNT(*) AS line_count,
                   SUM(CASE WHEN vl.status = 'released' THEN 1 ELSE 0 END) AS n_released,
                   SUM(CASE WHEN vl.status = 'cancelled' THEN 1 ELSE 0 END) AS n_cancelled
            FROM vl GROUP BY vl.invoice_id
        ),
        inv_state AS (
            SELECT i.*, h.legal_entity, h.project_code, h.customer_id, h.currency,
                   h.issue_date, h.due_date, h.total_amount, h.line_count,
                   (i.n_valid = i.n_lines AND h.n_released = h.line_count) AS ready,
                   (i.n_not_postable > 0 OR (i.n_valid = i.n_lines AND h.n_cancelled > 0))
                       AS withdrawn
            FROM inv i LEFT JOIN hdr h ON h.invoice_id = i.invoice_id
        ),
        live AS NOT MATERIALIZED ({_LIVE_POSTS.format(ledger="invoice_ledger")}),
        posts AS (
            SELECT {post_id} AS external_id, 'post' AS kind, h.invoice_id, h.invoice_version,
                   CAST(NULL AS VARCHAR) AS reverses_external_id, h.legal_entity,
                   h.project_code, h.customer_id, h.currency, h.issue_date, h.due_date,
                   {period_sql(conn, "h.issue_date")} AS natural_period,
                   h.total_amount, CAST(h.line_count AS INTEGER) AS line_count
            FROM inv_state h WHERE h.ready
        )"""
    plan = f"""
        SELECT p.* FROM posts p
        WHERE NOT EXISTS (SELECT 1 FROM invoice_ledger x
                          WHERE x.invoice_id = p.invoice_id
                            AND x.invoice_version = p.invoice_version
                            AND x.kind = 'post' AND x.state IN ('sent', 'confirmed'))
        UNION ALL
        SELECT {rev_id}, 'reversal', l.invoice_id, l.invoice_version, l.external_id,
               l.legal_entity, l.project_code, l.customer_id, l.currency, l.issue_date,
               l.due_date, l.period, -l.total_amount, l.line_count
        FROM live l JOIN inv_state s ON s.invoice_id = l.invoice_id
        WHERE s.withdrawn OR (s.ready AND s.invoice_version > l.invoice_version)
        """
    return pair_scoped(ctes, plan, scope, "invoice_id", "issue_date"), params


_PLAN_INVOICE_LINES = """
    SELECT p.external_id AS invoice_external_id, v.line_no, v.line_kind, v.description,
           v.quantity, v.unit_price, v.amount
    FROM plan_invoices p
    JOIN stg_invoices c ON c.invoice_id = p.invoice_id AND c.is_current AND c.state = 'valid'
    JOIN validated_invoice_lines v ON v.invoice_id = c.invoice_id AND v.line_no = c.line_no
                                  AND v.version = c.version
    WHERE p.kind = 'post'
    UNION ALL
    SELECT p.external_id, o.line_no, o.line_kind, o.description, -o.quantity, o.unit_price,
           -o.amount
    FROM plan_invoices p JOIN invoice_ledger_lines o ON o.invoice_external_id = p.reverses_external_id
    WHERE p.kind = 'reversal'
"""

# -- periods --------------------------------------------------------------------------------------

_PERIOD_SCHEMA = pa.schema(
    [("legal_entity", pa.string()), ("period", pa.string()), ("is_open", pa.bool_())]
)


def _add_months(period: str, n: int) -> date:
    y, m = (int(x) for x in period.split("-"))
    y, m = divmod(y * 12 + m - 1 + n, 12)
    return date(y, m + 1, 1)


def _load_periods(conn: Connection, erp: ErpTarget, fetch) -> None:
    """Ask the ERP which periods are open for every legal entity and month the plan touches."""
    span = read_frame(
        conn,
        """SELECT legal_entity, MIN(natural_period) AS lo, MAX(natural_period) AS hi
           FROM plan_groups GROUP BY legal_entity""",
    )
    if span.empty:
        frame = pd.DataFrame({"legal_entity": [], "period": [], "is_open": []})
    else:
        frame = fetch(
            lambda: erp.open_periods(
                span["legal_entity"].tolist(),
                _add_months(span["lo"].min(), 0),
                month_end(_add_months(span["hi"].max(), NEXT_OPEN_HORIZON_MONTHS)),
            )
        )
    load_temp(conn, "plan_periods", frame.astype({"is_open": bool}), _PERIOD_SCHEMA)


def _apply_policy(conn: Connection, table: str, policy: ClosedPeriodPolicy, group: str) -> None:
    """Book lines of closed periods into the next open one, or hold them; hold pairs together."""
    next_open = (
        """(SELECT MIN(o.period) FROM plan_periods o WHERE o.legal_entity = c.legal_entity
              AND o.period > c.period AND o.is_open)"""
        if policy == "next_open"
        else "CAST(NULL AS VARCHAR)"
    )
    held_msg = "'Posting period ' || m.period || ' is closed for ' || m.legal_entity || " + (
        "' and no later period is open within "
        + str(NEXT_OPEN_HORIZON_MONTHS)
        + " months; held until one opens'"
        if policy == "next_open"
        else "'; held (policy hold) until it reopens'"
    )
    conn.exec_driver_sql(
        f"""UPDATE {table} SET
              period = COALESCE(m.next_open, {table}.period),
              state = CASE WHEN m.next_open IS NULL THEN 'held' ELSE 'planned' END,
              batch_no = CASE WHEN m.next_open IS NULL THEN NULL ELSE {table}.batch_no END,
              erp_message = CASE WHEN m.next_open IS NULL THEN {held_msg}
                  ELSE 'Booked in ' || m.next_open || ': period ' || m.period
                       || ' is closed for ' || m.legal_entity END
            FROM (SELECT c.legal_entity, c.period, {next_open} AS next_open
                  FROM plan_periods c WHERE NOT c.is_open) m
            WHERE {table}.legal_entity = m.legal_entity AND {table}.natural_period = m.period"""
    )
    _hold_pairs(conn, table, group)


def _hold_pairs(conn: Connection, table: str, group: str) -> None:
    """The other half of a held correction (a document in scope goes whole, see
    `pair_scoped`), with the first held half's reason."""
    conn.exec_driver_sql(
        f"""UPDATE {table} SET state = 'held', batch_no = NULL,
              erp_message = 'Held with the other half of its correction ('
                            || h.external_id || '): ' || h.erp_message
            FROM (SELECT x.{group} AS grp, x.external_id, x.erp_message FROM {table} x
                  WHERE x.state = 'held' AND x.external_id = (
                      SELECT MIN(y.external_id) FROM {table} y
                      WHERE y.{group} = x.{group} AND y.state = 'held')) h
            WHERE {table}.state = 'planned' AND {table}.{group} = h.grp"""
    )


def _any_billing_hold(conn: Connection) -> bool:
    return conn.exec_driver_sql(f"SELECT COUNT(*) FROM ({HELD_PROJECTS}) h").scalar_one() > 0


def _apply_billing_holds(conn: Connection, table: str, group: str) -> None:
    """Hold every planned line of a project on a billing hold (posts and reversals alike: a
    credit note is an invoice too), and the other half of its correction; each carries the
    hold's reason. Every window re-plans held lines, so the first window after the hold is
    lifted posts them."""
    since = "COALESCE(' since ' || CAST(h.billing_hold_since AS VARCHAR), '')"
    reason = "COALESCE(NULLIF(h.billing_hold_reason, ''), 'no reason given')"
    conn.exec_driver_sql(
        f"""UPDATE {table} SET state = 'held', batch_no = NULL,
              erp_message = '{BILLING_HOLD_PREFIX}' || h.project_code || {since} || ': '
                            || {reason}
            FROM ({HELD_PROJECTS}) h
            WHERE {table}.project_code = h.project_code"""
    )
    _hold_pairs(conn, table, group)


def _note_pulled_in(conn: Connection, table: str, scope: Scope, date_col: str) -> None:
    """Say why a line outside the window's scope is planned: its document is in scope."""
    where, params = scope.sql(table, date_col)
    conn.execute(
        sa.text(
            f"""UPDATE {table} SET erp_message = 'Outside the window''s scope; planned with '
                       || 'the other half of its correction, which is in scope'
                WHERE NOT ({where})"""
        ),
        params,
    )


def _numbered(sql: str, group: str, extra: str, *, pairs: bool = True) -> str:
    """The plan rows of `sql` with `extra` columns and a batch number each (`batch_no`, from
    1): batches of `:size` rows, an entry's lines adjacent. A correction's two lines share a
    batch (a batch may hold `:size` + 1 rows): a window stopped between two batches (an
    ERP outage) never leaves a pair half-posted. A row numbered like the row before it when
    both are of one document (LAG over the same unordered window: no second sort); a
    document of three or more lines (only after a pair was split before this rule) may
    still span two batches.

    Numbered in the order of a sorted subquery: a window function with its own ORDER BY
    sorts every column of the plan again, twice the cost. Both DuckDB and PostgreSQL number
    an unordered window in its input's order; were one not to, batches would still hold
    `:size` rows each, only an entry's lines could land in neighbouring batches.
    Numbered when the plan is created; lines held afterwards lose their batch, so a batch
    may send fewer lines than `size` (cheaper than numbering again after the policy).
    The ledger's batch id (`batch_id`) is formatted when a line enters the ledger (an
    integer here: formatting 200,000 ids up front would hold up the first batch).

    `pairs=False`: the plan holds no reversals, so no correction pairs (a plain query of posts,
    one per document: its current version); rows are numbered alone, without the LAG (on
    PostgreSQL the numbering runs in the leader after the parallel sort: 2.99 -> 2.82 s for
    a 1M-entry window).
    """
    same = f" - CASE WHEN LAG(q.{group}) OVER () = q.{group} THEN 1 ELSE 0 END" if pairs else ""
    batch = f"CAST(FLOOR((ROW_NUMBER() OVER () - 1{same}) / :size) AS INTEGER) + 1"
    return (
        f"SELECT q.*, q.natural_period AS period, {extra}, {batch} AS batch_no "
        f"FROM (SELECT * FROM ({sql}) s ORDER BY {group}, kind, external_id) q"
    )


def ledger_batch_id(window_id: str, doc: str, batch_no: int) -> str:
    """The ledger's id of batch `batch_no` of a window, e.g. `<window>-b00003` (time lines) or
    `<window>-inv-b00003` (invoices), `<window>-exp-b00003` (expense lines). Invoice and
    expense batches go out in the order of these ids, which is their number order up to batch
    99,999. Mirrors `_BATCH_ID_SQL`."""
    return f"{_batch_prefix(window_id, doc)}{batch_no:05d}"


def _batch_prefix(window_id: str, doc: str) -> str:
    return f"{window_id}-b" if doc == "te" else f"{window_id}-{doc}-b"


#: `batch_id` of a plan row `p` (parameter `:bp`: `_batch_prefix`); NULL for a held line.
_BATCH_ID_SQL = (
    "(CAST(:bp AS VARCHAR) || lpad(CAST(p.batch_no AS VARCHAR),"
    " CAST(GREATEST(5, length(CAST(p.batch_no AS VARCHAR))) AS INTEGER), '0'))"
)


def build_plan(
    conn: Connection,
    erp: ErpTarget,
    scope: Scope,
    *,
    policy: ClosedPeriodPolicy,
    batch_size: int,
    invoice_batch_size: int,
    fetch,
    include_invoices: bool = True,
    expense_batch_size: int = 2_000,
    billing_hold_time_and_expenses: BillingHoldWork = "post",
) -> None:
    """Fill plan_lines, plan_invoices, plan_invoice_lines and plan_expenses for this window
    (temp tables).

    `billing_hold_time_and_expenses`: whether the time lines and expense lines of a project on
    a billing hold are posted (`post`, the default: the hold stops billing, not cost
    accounting) or held too."""
    if policy not in ("next_open", "hold"):
        raise ValueError(f"unknown closed-period policy {policy!r}: use 'next_open' or 'hold'")
    if conn.dialect.name == "postgresql":
        # The batch numbering sorts the whole plan: in memory, not in runs on disk (the 851,191
        # time lines of a 1M-entry plan sort in 185 MB; in 128 MB they spilled to disk).
        conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")
        # The join of the valid rows with their current versions (scans and hashes of the
        # versions and validated tables: 1.5 s of one core at 1M entries) in parallel workers.
        # At the default cost of 0.1 per row handed to the leader (ten times a row's CPU
        # cost), the planner kept a plan of hundreds of thousands of rows on one core; DuckDB
        # plans on all of them. A plan under ~8 MB of versions stays serial (min_parallel_
        # table_scan_size), and a server without parallel workers plans as before.
        conn.exec_driver_sql("SET LOCAL parallel_tuple_cost = 0.01")
    # is_new: not in the ledger yet (`merge_plan` clears it for lines the ledger holds unsent).
    extra = (
        "CAST('planned' AS VARCHAR) AS state, CAST(NULL AS VARCHAR) AS erp_message, TRUE AS is_new"
    )
    _plan_posted_lines(conn, scope, TIME_LINES, extra, batch_size)
    sql, params = _plan_invoices_sql(conn, scope)
    if not include_invoices:
        sql = f"SELECT * FROM ({sql}) q WHERE FALSE"
    temp_table(
        conn,
        "plan_invoices",
        _numbered(sql, "invoice_id", extra),
        {**params, "size": float(invoice_batch_size)},
    )
    _plan_posted_lines(conn, scope, EXPENSE_LINES, extra, expense_batch_size)
    if conn.dialect.name == "postgresql":
        # Autovacuum never analyzes temporary tables: plan_invoices (with `kind`, which the
        # invoice lines filter on) before the invoice lines are joined to it. Planned as two
        # rows, the lines of 388 planned invoices were found by a nested loop over every
        # invoice line per line: 0.77-1.07 s at 1M entries, 3 ms as a hash join.
        analyze(conn, _PLAN_ANALYZED[1], target=SCRATCH_STATISTICS_TARGET)
    if not scope.is_all:
        _note_pulled_in(conn, "plan_lines", scope, "work_date")
        _note_pulled_in(conn, "plan_invoices", scope, "issue_date")
        _note_pulled_in(conn, "plan_expenses", scope, "expense_date")
    temp_table(conn, "plan_groups", _PLAN_GROUPS)
    _load_periods(conn, erp, fetch)
    closed = conn.exec_driver_sql("SELECT COUNT(*) FROM plan_periods WHERE NOT is_open")
    if closed.scalar_one():
        _apply_policy(conn, "plan_lines", policy, "entry_id")
        _apply_policy(conn, "plan_invoices", policy, "invoice_id")
        _apply_policy(conn, "plan_expenses", policy, "expense_id")
        temp_table(conn, "plan_groups", _PLAN_GROUPS)  # lines held or moved to other periods
    if _any_billing_hold(conn):
        _apply_billing_holds(conn, "plan_invoices", "invoice_id")
        if billing_hold_time_and_expenses == "hold":
            _apply_billing_holds(conn, "plan_lines", "entry_id")
            _apply_billing_holds(conn, "plan_expenses", "expense_id")
        temp_table(conn, "plan_groups", _PLAN_GROUPS)
    temp_table(conn, "plan_invoice_lines", _PLAN_INVOICE_LINES)
    if conn.dialect.name == "postgresql":
        # The policy may have held invoices. (The index by batch is made when the batches
        # are sent: `PendingLines.batches`; a dry run never reads by batch.)
        analyze(conn, *_PLAN_ANALYZED, target=SCRATCH_STATISTICS_TARGET)


def _plan_posted_lines(
    conn: Connection, scope: Scope, lines: PostedLines, extra: str, size: int
) -> None:
    """The numbered plan of `lines` (`lines.plan`), its reversals computed first: a plan
    without any (a first window, or none of the posted entries changed) is a plain query of
    posts, which PostgreSQL joins and sorts in parallel workers; a UNION with the reversals
    left the sort of every planned line to the leader (0.6 s of 851,191 lines at 1M)."""
    rev = f"{lines.plan}_reversals"
    temp_table(conn, rev, _reversals_sql(lines))
    pairs = conn.exec_driver_sql(f"SELECT EXISTS (SELECT 1 FROM {rev})").scalar_one()
    if pairs:
        # Estimated from its real size where the scope's filter looks reversals up.
        analyze(conn, rev, target=SCRATCH_STATISTICS_TARGET)
        sql, params = _plan_lines_sql(conn, scope, lines, reversals=rev)
    else:
        sql, params = _plan_lines_sql(conn, scope, lines, reversals="")
    temp_table(
        conn,
        lines.plan,
        _numbered(sql, lines.ident, extra, pairs=pairs),
        {**params, "size": float(size)},
    )
    conn.exec_driver_sql(f"DROP TABLE {rev}")


def plan_counts(conn: Connection) -> dict[str, int]:
    """Lines per document, kind and state in the plan."""
    rows = conn.exec_driver_sql(
        "SELECT document, kind, state, SUM(n) FROM plan_groups GROUP BY document, kind, state"
    ).fetchall()
    out: dict[str, int] = {}
    for doc, kind, state, n in rows:
        out[f"{doc}_{kind}_{state}"] = int(n)
    return out


# -- writing the plan into the ledgers ------------------------------------------------------------

#: The document columns of each ledger (`connectors.erp.documents`), in its column order.
_TIME_COLS = ", ".join(ledger_order(TIME_LINE))
_INVOICE_COLS = ", ".join((*ledger_order(INVOICE), "line_count"))
_INVOICE_LINE_COLS = ", ".join(INVOICE_LINE.names)
_EXPENSE_COLS = ", ".join(ledger_order(EXPENSE_LINE))


#: Plan rows a window sends: a batch each (held lines have none).
_SENDABLE = "p.state = 'planned' AND p.batch_no IS NOT NULL"


def _insert_new(
    conn: Connection,
    ledger: str,
    plan: str,
    cols: str,
    track: dict,
    where: str = "TRUE",
    sent: bool = False,
    batch: str = _BATCH_ID_SQL,
) -> int:
    """Insert the new plan rows matching `where` (as `sent` at `:sent_at`, with `sent`);
    `batch` is their ledger batch id (SQL; parameters in `track`)."""
    state, sent_at = ("'sent'", ":sent_at") if sent else ("state", "NULL")
    return conn.execute(
        sa.text(
            f"""INSERT INTO {ledger} ({cols}, state, erp_message, batch_id, window_id,
                                      run_id, launched_by, planned_at, sent_at)
                SELECT {cols}, {state}, erp_message, {batch}, :w, :run, :by, :now, {sent_at}
                FROM {plan} p WHERE p.is_new AND {where}"""
        ),
        track,
    ).rowcount


def track_params(window_id: str, run_id: str | None, launched_by: str | None, now) -> dict:
    """What every ledger row written by a window records about it."""
    return {"w": window_id, "run": run_id, "by": launched_by, "now": now}


def merge_plan(conn: Connection, scope: Scope, track: dict, *, defer_lines: bool = False) -> int:
    """Write the plan into the ledgers; returns how many earlier unsent lines became void.

    New external IDs are inserted (with `defer_lines`, a new time line with a batch is
    left to `PendingLines`); ones the ledger holds unsent (planned, held, rejected, void)
    are re-planned under this window; unsent lines in scope (or of an entry or invoice the
    plan covers) that the plan no longer wants (their entry moved on before they reached
    the ERP) become void. `track`: `track_params`.
    """
    voided = 0
    for doc, ledger, plan, cols, date_col, group in (
        ("te", "posting_ledger", "plan_lines", _TIME_COLS, "work_date", "entry_id"),
        ("inv", "invoice_ledger", "plan_invoices", _INVOICE_COLS, "issue_date", "invoice_id"),
        ("exp", "expense_ledger", "plan_expenses", _EXPENSE_COLS, "expense_date", "expense_id"),
    ):
        params = {**track, "bp": _batch_prefix(track["w"], doc)}
        unsent = conn.exec_driver_sql(
            f"SELECT COUNT(*) FROM {ledger} WHERE state IN ('planned', 'held', 'rejected', 'void')"
        ).scalar_one()
        if unsent:  # usually none: the previous window finished
            where, scope_params = scope.sql("v", date_col)
            # In scope: the line, or its entry (invoice) in the plan (see `pair_scoped`).
            unwanted = f"""SELECT v.external_id FROM {ledger} v
                WHERE v.state IN ('planned', 'held')
                  AND ({where} OR v.{group} IN (SELECT p.{group} FROM {plan} p))
                  AND NOT EXISTS (SELECT 1 FROM {plan} p WHERE p.external_id = v.external_id)"""
            voided += conn.execute(
                sa.text(
                    f"""UPDATE {ledger} SET state = 'void', window_id = :w, settled_at = :now,
                            erp_message = 'No longer wanted (superseded, quarantined or '
                                          || 'withdrawn) before it reached the ERP'
                        WHERE state IN ('planned', 'held') AND external_id IN ({unwanted})"""
                ),
                {**track, **scope_params},
            ).rowcount
            conn.execute(
                sa.text(
                    f"""UPDATE {ledger} SET period = p.period, state = p.state,
                            erp_message = p.erp_message, batch_id = {_BATCH_ID_SQL},
                            window_id = :w,
                            run_id = :run, launched_by = :by, planned_at = :now,
                            sent_at = NULL, settled_at = NULL
                        FROM {plan} p
                        WHERE {ledger}.external_id = p.external_id
                          AND {ledger}.state IN ('planned', 'held', 'rejected', 'void')"""
                ),
                params,
            )
            # The plan never holds a line the ledger has sent or confirmed (see the plan SQL),
            # so only these re-planned ones are in the ledger already.
            conn.exec_driver_sql(
                f"""UPDATE {plan} SET is_new = FALSE
                    WHERE external_id IN (SELECT external_id FROM {ledger})"""
            )
        deferred = defer_lines and ledger == "posting_ledger"
        _insert_new(conn, ledger, plan, cols, params, f"NOT ({_SENDABLE})" if deferred else "TRUE")
    conn.exec_driver_sql(
        f"""INSERT INTO invoice_ledger_lines ({_INVOICE_LINE_COLS})
           SELECT {_INVOICE_LINE_COLS} FROM plan_invoice_lines p
           WHERE NOT EXISTS (SELECT 1 FROM invoice_ledger_lines x
                             WHERE x.invoice_external_id = p.invoice_external_id
                               AND x.line_no = p.line_no)"""
    )
    return voided


@dataclass
class PendingLines:
    """A window's new time lines, still only in `plan_lines` of `conn` (`merge_plan` with
    `defer_lines`): each batch enters the ledger, marked `sent`, just before it is sent.

    Safe to stop at any point: a line the ledger lacks was never sent, and the next
    window plans it again; `flush` writes what a window that stopped cleanly did not send
    (as `planned`, so finance sees it waiting).
    """

    conn: Connection
    track: dict

    replanned: bool = False  # some of the plan's lines are in the ledger already
    _numbers: dict[str, int] = field(default_factory=dict, init=False, repr=False)  # id -> no

    def batches(self) -> list[str]:
        """The ledger ids of the batches to send, in order."""
        with self.conn.begin():
            if self.conn.dialect.name == "postgresql":
                # Each batch is read from the plan by number (`lines`).
                self.conn.exec_driver_sql(
                    "CREATE INDEX IF NOT EXISTS plan_lines_batch_no ON plan_lines (batch_no)"
                )
            rows = self.conn.exec_driver_sql(
                f"""SELECT batch_no, bool_or(NOT is_new) FROM plan_lines p WHERE {_SENDABLE}
                    GROUP BY batch_no ORDER BY batch_no"""
            ).fetchall()
        self.replanned = any(r[1] for r in rows)
        self._numbers = {ledger_batch_id(self.track["w"], "te", r[0]): r[0] for r in rows}
        return list(self._numbers)

    def write_sent(self, batch_id: str, sent_at) -> None:
        """Batch `batch_id` into the ledger as `sent` (and its re-planned lines), one commit."""
        with self.conn.begin():
            lines = _insert_new(
                self.conn,
                "posting_ledger",
                "plan_lines",
                _TIME_COLS,
                {**self.track, "n": self._numbers[batch_id], "b": batch_id, "sent_at": sent_at},
                f"p.batch_no = :n AND {_SENDABLE}",
                sent=True,
                batch=":b",
            )
            if self.replanned:
                lines += mark_sent(self.conn, "posting_ledger", batch_id, sent_at)
            open_batch(self.conn, "posting_ledger", batch_id, self.track["w"], lines, sent_at)

    def lines(
        self,
        batch_id: str,
        columns: Sequence[str],
        *,
        arrow_dtypes: bool,
        schema: pa.Schema | None = None,
    ) -> pd.DataFrame:
        """The lines of batch `batch_id` (after `write_sent`: what the ledger holds as sent for
        it), from the plan: on the window's own connection, by batch number."""
        with self.conn.begin():
            return fetch_frame(
                self.conn,
                f"SELECT {', '.join(columns)} FROM plan_lines p "
                f"WHERE p.batch_no = :n AND {_SENDABLE} ORDER BY external_id",
                {"n": self._numbers[batch_id]},
                arrow_dtypes=arrow_dtypes,
                schema=schema,
            )

    def flush(self) -> int:
        """The lines not sent: into the ledger as `planned`."""
        with self.conn.begin():
            return _insert_new(
                self.conn,
                "posting_ledger",
                "plan_lines",
                _TIME_COLS,
                {**self.track, "bp": _batch_prefix(self.track["w"], "te")},
                "NOT EXISTS (SELECT 1 FROM posting_ledger x WHERE x.external_id = p.external_id)",
            )


def mark_sent(conn: Connection, ledger: str, batch_id: str, sent_at) -> int:
    """A planned batch is handed to the ERP: `sent` (committed by the caller) before it is;
    returns how many lines."""
    return conn.execute(
        sa.text(
            f"UPDATE {ledger} SET state = 'sent', sent_at = :now "
            "WHERE batch_id = :b AND state = 'planned'"
        ),
        {"now": sent_at, "b": batch_id},
    ).rowcount
