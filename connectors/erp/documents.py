"""The ERP documents stagepost posts, each declared once: its fields, their types and its key.

A document kind (a time line, an invoice, an invoice's line) is sent to every ERP target,
kept in the posting ledger and written to the SQL-interface tables; all of them take its
columns from here: the SQLAlchemy columns (so the DDL of DuckDB and PostgreSQL), the Arrow
schema frames are converted with (decimals stay exact) and the column lists of the SQL
statements and of the frames in and out of `ErpTarget`. A table that holds a document adds
only its own columns (the ledger's state and tracking, the ERP's `posted_at`).

A new kind (an expense line, a journal entry and its lines) is one more `Document` here:
header documents start with `_posted_identity()` (external id, kind, what a reversal
reverses), so they are posted, reversed and reconciled the same way.

The frozen DDL of the Alembic base revisions (`alembic/*/release1*.sql`) is history and is not
derived; `tests/test_schema_migrations.py` checks that tables derived from here equal what the
revisions build.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import sqlalchemy as sa

from connectors.sql import arrow_type

Kind = Literal["text", "integer", "date", "decimal", "boolean"]


@dataclass(frozen=True)
class Field:
    """One field of a document: its logical type (a decimal with its precision and scale),
    whether it may be empty and whether it is (part of) the document's key."""

    name: str
    kind: Kind
    precision: int | None = None
    scale: int | None = None
    nullable: bool = False
    key: bool = False
    note: str = ""  # what a reader of the declaration needs to know

    def __post_init__(self) -> None:
        digits = (self.precision, self.scale)
        if self.kind == "decimal" and None in digits:
            raise ValueError(f"{self.name}: a decimal field needs its precision and scale")
        if self.kind != "decimal" and digits != (None, None):
            raise ValueError(f"{self.name}: precision and scale belong to decimal fields only")
        if self.key and self.nullable:
            raise ValueError(f"{self.name}: a key field cannot be nullable")

    def sql_type(self) -> sa.types.TypeEngine:
        """The SQL type (SQLAlchemy: rendered for DuckDB and PostgreSQL alike)."""
        if self.kind == "decimal":
            return sa.Numeric(self.precision, self.scale)
        return {
            "text": sa.Text(),
            "integer": sa.Integer(),
            "date": sa.Date(),
            "boolean": sa.Boolean(),
        }[self.kind]

    def column(self) -> sa.Column:
        """A new SQLAlchemy column (a column belongs to one table, so one per table)."""
        return sa.Column(self.name, self.sql_type(), primary_key=self.key, nullable=self.nullable)


def text(name: str, **kw) -> Field:
    return Field(name, "text", **kw)


def integer(name: str, **kw) -> Field:
    return Field(name, "integer", **kw)


def day(name: str, **kw) -> Field:
    return Field(name, "date", **kw)


def decimal(name: str, precision: int, scale: int, **kw) -> Field:
    return Field(name, "decimal", precision, scale, **kw)


def boolean(name: str, **kw) -> Field:
    return Field(name, "boolean", **kw)


def _posted_identity(kind_note: str) -> tuple[Field, ...]:
    """The fields every posted header document starts with."""
    return (
        text("external_id", key=True, note="deterministic, unique in the ERP: idempotency key"),
        text("kind", note=kind_note),
        text("reverses_external_id", nullable=True, note="a reversal: the document it cancels"),
    )


@dataclass(frozen=True)
class Document:
    """A document kind: its fields in their declared order (the order of the ERP's tables and
    of the frames `ErpTarget` takes and returns)."""

    name: str
    fields: tuple[Field, ...]

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"{self.name}: a field is declared twice")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.key)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")

    def columns(self, order: Sequence[str] | None = None) -> list[sa.Column]:
        """New SQLAlchemy columns of the fields (`order`: all of them, in another order)."""
        names = self.names if order is None else tuple(order)
        if sorted(names) != sorted(self.names):
            raise ValueError(f"{self.name}: order {names} is not a permutation of {self.names}")
        return [self.field(n).column() for n in names]

    def arrow_schema(self, *, decimal_precision: int | None = None) -> pa.Schema:
        """The Arrow schema of the fields; `decimal_precision` widens every decimal (keeping
        its scale) for readers that take any ERP's values. Every Arrow field is nullable: a
        frame with an empty required value reaches the target, which names it."""
        out = []
        for f in self.fields:
            t = arrow_type(f.sql_type())
            if decimal_precision is not None and f.kind == "decimal":
                t = pa.decimal128(decimal_precision, t.scale)
            out.append(pa.field(f.name, t))
        return pa.schema(out)


TIME_LINE = Document(
    "time_line",
    (
        *_posted_identity("post | reversal"),
        text("entry_id"),
        integer("entry_version"),
        text("legal_entity"),
        text("employee_id"),
        text("project_code"),
        text("task_code"),
        day("work_date"),
        text("period", note="YYYY-MM accounting period booked into (after the policy)"),
        decimal("hours", 10, 4, note="negative on a reversal"),
        decimal("bill_rate", 14, 4),
        decimal("amount", 18, 2, note="rounded to cents once; negative on a reversal"),
        text("currency"),
        text("description", nullable=True),
    ),
)

INVOICE = Document(
    "invoice",
    (
        *_posted_identity("post | reversal (credit note)"),
        text("invoice_id"),
        integer("invoice_version", note="sum of the current line versions"),
        text("legal_entity"),
        text("project_code"),
        text("customer_id"),
        text("currency"),
        day("issue_date"),
        day("due_date", nullable=True),
        text("period"),
        decimal("total_amount", 18, 2),
    ),
)

#: The lines of an invoice (a credit note's: the negated originals).
INVOICE_LINE = Document(
    "invoice_line",
    (
        text("invoice_external_id", key=True),
        integer("line_no", key=True),
        text("line_kind"),
        text("description", nullable=True),
        decimal("quantity", 14, 4),
        decimal("unit_price", 14, 4),
        decimal("amount", 18, 2),
    ),
)

#: An expense an employee claimed on a project: what the company owes the employee
#: (`reimbursable`) and what it rebills the customer (`rebill_amount`, 0 unless `billable`).
EXPENSE_LINE = Document(
    "expense_line",
    (
        *_posted_identity("post | reversal"),
        text("expense_id"),
        integer("expense_version"),
        text("legal_entity"),
        text("employee_id"),
        text("project_code"),
        text("task_code", nullable=True),
        day("expense_date"),
        text("period", note="YYYY-MM accounting period booked into (after the policy)"),
        text("category"),
        decimal("amount", 18, 2, note="negative on a reversal"),
        decimal("tax_amount", 18, 2, note="included in amount; negative on a reversal"),
        text("currency"),
        boolean("billable"),
        boolean("reimbursable"),
        decimal("markup_percent", 14, 4),
        decimal(
            "rebill_amount",
            18,
            2,
            note="amount x (1 + markup_percent / 100), half up to the cent; 0 unless billable; "
            "negative on a reversal",
        ),
        text("receipt_ref", nullable=True),
        text("description", nullable=True),
    ),
)

#: A customer, created once (a won deal's, `posting.deal_setup`; or master data of posted
#: work). Its external ID is `customer:<customer_id>` in every target.
CUSTOMER = Document(
    "customer",
    (
        text("customer_id", key=True),
        text("customer_name", nullable=True),
    ),
)

#: A project: master data of posted work, or set up from a won CRM deal. The fields after
#: `currency` are the set-up's (empty on projects made only as posting master data); its
#: external ID is the project code.
PROJECT = Document(
    "project",
    (
        text("project_code", key=True),
        text("project_name", nullable=True),
        text("customer_id", nullable=True),
        text("legal_entity"),
        text("currency"),
        text("billing_method", nullable=True),
        day("start_date", nullable=True),
        day("end_date", nullable=True),
        decimal("budget_hours", 10, 4, nullable=True),
        decimal("contract_value", 18, 2, nullable=True, note="in the project's currency"),
        text("project_manager", nullable=True),
        text("deal_id", nullable=True, note="the CRM deal it was set up from"),
    ),
)

#: What a later version of a deal may change on its project in the ERP (the rest is fixed
#: at set-up: customer, currency, template; the legal entity once time is posted).
PROJECT_UPDATABLE: tuple[str, ...] = (
    "project_name",
    "legal_entity",
    "billing_method",
    "start_date",
    "end_date",
    "budget_hours",
    "contract_value",
    "project_manager",
)

#: A project's task (a set-up project's come from its template). External ID in Tryton:
#: `<project_code>::<task_code>`.
PROJECT_TASK = Document(
    "project_task",
    (
        text("project_code", key=True),
        text("task_code", key=True),
        text("task_name", nullable=True),
    ),
)

#: A journal entry (issue 17, docs/revenue.md): recognized revenue, or a month-end WIP accrual
#: and its reversal. One per legal entity, period and currency (`journal_id`
#: `LE:YYYY-MM:CUR`); a change is a reversal of the posted version and a new version.
JOURNAL = Document(
    "journal",
    (
        *_posted_identity("post | reversal"),
        text("journal_id", note="LE:YYYY-MM:CUR, with the journal type: the journal's identity"),
        integer("journal_version", note="1, 2, ...: a new version reverses the one before"),
        text("journal_type", note="revenue | wip_accrual | ic_payable | ic_receivable"),
        text("legal_entity"),
        text("currency"),
        day("journal_date", note="the period's last day; an accrual's reversal: the next first"),
        text("period", note="YYYY-MM accounting period booked into"),
        decimal("total_debit", 18, 2, note="= the sum of credits: a journal balances"),
    ),
)

#: The lines of a journal (a reversal's: debit and credit swapped).
JOURNAL_LINE = Document(
    "journal_line",
    (
        text("journal_external_id", key=True),
        integer("line_no", key=True),
        text("account_code"),
        text("project_code"),
        text(
            "line_role",
            note="wip | revenue | unbilled | deferred | ic_cost | ic_payable | ic_receivable | "
            "ic_revenue: the line's part, any chart",
        ),
        decimal("debit", 18, 2),
        decimal("credit", 18, 2),
        text("description", nullable=True),
    ),
)

DOCUMENTS: tuple[Document, ...] = (
    TIME_LINE,
    INVOICE,
    INVOICE_LINE,
    EXPENSE_LINE,
    CUSTOMER,
    PROJECT,
    PROJECT_TASK,
    JOURNAL,
    JOURNAL_LINE,
)
